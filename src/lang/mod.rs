//! TEMPORARY stand-in for the language front end (replaced by the `lang` branch).
use crate::ir;
use std::path::{Path, PathBuf};

pub struct Loaded {
    pub path: PathBuf,
    pub name: String,
    pub variants: Vec<ir::Variant>,
    pub files: Vec<PathBuf>,
}

#[derive(Debug)]
pub struct Diagnostics(String);
impl Diagnostics {
    pub fn render(&self) -> String {
        self.0.clone()
    }
    pub fn len(&self) -> usize {
        1
    }
}
impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Diagnostics {}

pub fn load(path: &Path, _sets: &[String]) -> Result<Loaded, Diagnostics> {
    Err(Diagnostics(format!("{}: the language front end is not merged yet", path.display())))
}

pub fn format_file(path: &Path) -> Result<String, Diagnostics> {
    Err(Diagnostics(format!("{}: the language front end is not merged yet", path.display())))
}
