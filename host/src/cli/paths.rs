//! Command-line paths that must already exist.
//!
//! toolhost creates its own default directories (the user's data, cache and
//! state directories) on first use. A path the user typed is different: a
//! `--db /nonexistent/dir/x.db` is far more often a typo than a wish, and
//! creating the directory silently would put the records somewhere nobody
//! looks. So the parent of an explicit `--db` must exist.

use std::path::Path;

use super::Failure;

/// `--db` is not a directory, and its directory exists (exit 2 naming the
/// path, if not). A URL (a shared store) has no directory to check.
pub fn check_db_parent(db: &Path) -> Result<(), Failure> {
    if db.to_string_lossy().contains("://") {
        return Ok(());
    }
    if db.is_dir() {
        return Err(Failure::usage(format!(
            "--db {}: that is a directory; --db names the store's file (such as {}), or a postgres:// URL",
            db.display(),
            db.join("toolhost.db").display()
        )));
    }
    let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if parent.is_dir() {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "--db {}: the directory {} does not exist (toolhost creates only its default locations; create it, or omit --db for the user's data directory)",
        db.display(),
        parent.display()
    )))
}
