//! List files (`--from-file`): one entry a line, `#` starts a comment.

use std::path::Path;

/// The non-empty lines of a list file, each with `FILE:LINE` for messages.
pub fn read(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .enumerate()
        .filter_map(|(n, line)| {
            let line = line.split('#').next().unwrap_or("").trim();
            (!line.is_empty()).then(|| (format!("{}:{}", path.display(), n + 1), line.to_string()))
        })
        .collect())
}
