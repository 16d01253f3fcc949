//! Local log files for `scan`: a file, a directory walked recursively, or stdin.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{LogSource, SourceError};

/// Whether a file found while walking a directory may hold CloudTrail records: JSON or JSON
/// lines, gzipped or not. (A file named on the command line is read whatever its name.)
fn is_log_name(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name = name.strip_suffix(".gz").unwrap_or(name);
    [".json", ".jsonl", ".ndjson"]
        .iter()
        .any(|ext| name.ends_with(ext))
        || path.extension().is_some_and(|e| e == "gz")
}

/// Expands a local path: a file as itself, a directory into its log files (recursively, in
/// name order), `-` into stdin.
pub fn expand(path: &str) -> Result<Vec<LogSource>, SourceError> {
    if path == "-" {
        return Ok(vec![LogSource::Stdin]);
    }
    let root = PathBuf::from(path);
    let meta = std::fs::metadata(&root).map_err(|source| SourceError::Local {
        path: root.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Ok(vec![LogSource::File(root)]);
    }
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
        let entry = entry.map_err(|e| SourceError::Local {
            path: e.path().map(Path::to_owned).unwrap_or_else(|| root.clone()),
            source: e.into(),
        })?;
        if entry.file_type().is_file() && is_log_name(entry.path()) {
            out.push(LogSource::File(entry.into_path()));
        }
    }
    Ok(out)
}

/// Opens a local file, or stdin.
pub fn open(path: Option<&Path>) -> Result<Box<dyn Read + Send>, SourceError> {
    match path {
        Some(path) => std::fs::File::open(path)
            .map(|f| Box::new(f) as Box<dyn Read + Send>)
            .map_err(|source| SourceError::Local {
                path: path.to_owned(),
                source,
            }),
        None => Ok(Box::new(std::io::stdin())),
    }
}
