//! `LabPlan`: the complete list of kernel objects a topology becomes.

pub mod types;

pub use types::*;

/// STUB
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);
pub fn plan(_r: &crate::topology::Resolved, _b: Backends) -> Result<LabPlan, PlanError> { todo!() }
pub fn render(_p: &LabPlan) -> String { todo!() }
