//! (filled in by its issue-27 branch)
