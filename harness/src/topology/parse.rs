//! STUB (replaced by the real loader)
use super::Resolved;
#[derive(Debug, Clone)]
pub struct Problem { pub path: String, pub line: Option<usize>, pub message: String }
impl std::fmt::Display for Problem { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{}: {}", self.path, self.message) } }
#[derive(Debug, Clone)]
pub struct Report { pub origin: String, pub errors: Vec<Problem>, pub warnings: Vec<Problem> }
impl std::fmt::Display for Report { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{}", self.origin) } }
impl std::error::Error for Report {}
pub struct Loaded { pub resolved: Resolved, pub warnings: Vec<Problem> }
pub fn load_file(_path: &std::path::Path) -> Result<Loaded, Report> { todo!() }
pub fn load_str(_text: &str, _origin: &str) -> Result<Loaded, Report> { todo!() }
