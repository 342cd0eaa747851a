//! Saved histories: a failure's shrunk operations as JSON, kept in the repository and
//! replayed on every backend on every run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::op::Op;

/// A history worth keeping: a regression case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// What it once caught, in a sentence.
    pub note: String,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

impl History {
    /// The history as saved: pretty JSON, one operation per line where it fits.
    pub fn to_json(&self) -> String {
        let mut out = format!("{{\n  \"note\": {},\n  \"ops\": [\n", json(&self.note));
        for (i, op) in self.ops.iter().enumerate() {
            let comma = if i + 1 < self.ops.len() { "," } else { "" };
            out.push_str(&format!("    {}{comma}\n", json(op)));
        }
        out.push_str("  ]\n}\n");
        out
    }

    /// Every saved history in `dir` (`*.json`), sorted by file name.
    pub fn load_all(dir: &Path) -> Result<Vec<(String, History)>, String> {
        let mut found: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        found.sort();
        found
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let history: History = serde_json::from_str(&text)
                    .map_err(|e| format!("{}: not a history: {e}", path.display()))?;
                let name = path
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                Ok((name, history))
            })
            .collect()
    }
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("\"(unserialisable: {e})\""))
}
