//! Names the user chooses that end up as Dolt objects.

/// Checks a database name. Dolt names a database after its directory, turning `-` into `_`,
/// so only names that survive that unchanged are accepted.
pub fn check_db_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "database name {name:?} must have 1 to 64 characters"
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "database name {name:?}: use letters, digits and _ only (Dolt turns a - in a \
             directory name into _)"
        ));
    }
    if ["information_schema", "mysql", "performance_schema", "sys"]
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(format!("database name {name:?} is reserved by MySQL"));
    }
    Ok(())
}
