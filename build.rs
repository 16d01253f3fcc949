//! Rebuild when the builtin rules change: `include_dir!` embeds `rules/`, but cargo only
//! notices edits to files it was told about.
fn main() {
    println!("cargo:rerun-if-changed=rules");
}
