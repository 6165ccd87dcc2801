//! The library's client API against the real dolt binary. Its own test binary, because it
//! sets process-wide environment variables.

mod common;

use common::*;

#[test]
fn library_client_autostarts_and_connects() {
    use mysql_async::prelude::Queryable;
    let env = TestEnv::new();
    let cfg = doltctl::Config::load(&env.config).unwrap();
    // The library runs supervisors with the doltctl binary; a test binary is not doltctl.
    let mut cfg = cfg;
    cfg.server.dolt_bin = dolt_bin().to_string_lossy().into_owned();
    // The only test in this binary: the variables the library hands to the supervisor it
    // starts are set process-wide here without racing other tests.
    std::env::set_var("DOLTCTL_BIN", assert_cmd::cargo::cargo_bin("doltctl"));
    std::env::set_var("DOLT_ROOT_PATH", env.root());
    std::env::set_var("DOLT_DISABLE_EVENT_FLUSH", "1");
    block_on(async {
        let client = doltctl::Client::from_config(cfg);
        assert!(client.running().unwrap().is_none());
        let mut conn = client.conn().await.unwrap();
        let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
        conn.disconnect().await.unwrap();
        assert_eq!(client.url().await.unwrap(), env.url());
        let n: i64 = client
            .with_retry(|c| {
                Box::pin(
                    async move { c.query_first("SELECT 41 + 1").await.map(|v| v.unwrap_or(0)) },
                )
            })
            .await
            .unwrap();
        assert_eq!(n, 42);
        let err = client
            .with_retry(|c| Box::pin(async move { c.query_drop("SELECT * FROM nope").await }))
            .await
            .unwrap_err();
        match err {
            doltctl::Error::Sql {
                attempts,
                transient,
                ..
            } => {
                assert_eq!(attempts, 1);
                assert!(!transient);
            }
            other => panic!("unexpected error {other}"),
        }
    });
    env.stop();
}
