//! SQL files: statements one at a time inside the import's transaction.

use super::*;

pub(super) async fn run_sql(
    conn: &mut Conn,
    job: &Job,
    sh: &Shared,
    progress: &mut Progress,
) -> std::result::Result<(u64, u64), Failure> {
    let total = job.statements.len() as u64;
    let mut rows = 0u64;
    let mut done = 0u64;
    for (i, st) in job.statements.iter().enumerate() {
        sh.set_line(Some(st.line));
        if is_transaction_control(&st.text) {
            if sh.attempts.load(Ordering::SeqCst) == 1 {
                tracing::warn!(
                    "{}:{}: skipped {:?}: the whole import runs in one transaction",
                    job.spec.path.display(),
                    st.line,
                    st.text
                );
            }
            continue;
        }
        if commits_implicitly(&st.text) {
            sh.implicit_commit.store(true, Ordering::SeqCst);
        }
        let result = conn.query_iter(st.text.as_str()).await?;
        rows += result.affected_rows();
        result.drop_result().await?;
        done += 1;
        progress.tick(rows, (i as u64 + 1) * job.size / total.max(1));
    }
    Ok((rows, done))
}
