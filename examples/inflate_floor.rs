//! Gzip log files → how many bytes they inflate to, by libdeflate in one call per file, and
//! nothing else: the floor under `trailwarden scan`'s speed, which `benches/scan.sh` times
//! beside `gzip -dc` of the same files.
//!
//! ```sh
//! cargo run --release --example inflate_floor -- target/bench-corpus/corpus
//! ```

use std::io;

fn main() -> io::Result<()> {
    let mut inflater = libdeflater::Decompressor::new();
    let mut out = Vec::new();
    let mut total = 0u64;
    for root in std::env::args().skip(1) {
        for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
            let entry = entry.map_err(io::Error::other)?;
            if !entry.file_type().is_file() || !entry.path().to_string_lossy().ends_with(".gz") {
                continue;
            }
            let gz = std::fs::read(entry.path())?;
            // The trailer's ISIZE sizes the output; the bench corpus is single-member gzip
            // well under 4 GiB, so it is the exact size.
            let size = gz
                .len()
                .checked_sub(4)
                .and_then(|at| gz[at..].try_into().ok())
                .map(u32::from_le_bytes)
                .ok_or_else(|| io::Error::other(format!("{}: not gzip", entry.path().display())))?;
            out.resize(size as usize, 0);
            let n = inflater
                .gzip_decompress(&gz, &mut out)
                .map_err(|e| io::Error::other(format!("{}: {e}", entry.path().display())))?;
            total += n as u64;
        }
    }
    println!("{total}");
    Ok(())
}
