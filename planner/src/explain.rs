//! `explain`: what pruning removed, step by step, and the tasks a read becomes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::prune::{PruneStep, PruneStepKind};
use crate::read_plan::ReadPlan;

/// One task, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainTask {
    /// Position in the plan.
    pub index: usize,
    /// What the task covers.
    pub label: String,
    /// Files it reads.
    pub files: u64,
    /// Rows in those files (before filtering).
    pub rows: u64,
    /// Bytes of those files (less the row groups it skips).
    pub bytes: u64,
    /// Row groups it reads (a file without a row-group hint counts as one).
    #[serde(default)]
    pub row_groups: u64,
    /// Its predicate.
    pub predicate: Option<String>,
}

/// The explanation of a read plan; `Display` is the text rendering, serde the JSON one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explain {
    /// The dataset's location.
    pub dataset: String,
    /// The version planned.
    pub version: u64,
    /// The query's predicate.
    pub predicate: Option<String>,
    /// Pruning counts per step.
    pub steps: Vec<PruneStep>,
    /// The tasks.
    pub tasks: Vec<ExplainTask>,
}

impl Explain {
    /// Summarise a plan.
    pub fn new(plan: &ReadPlan) -> Explain {
        Explain {
            dataset: plan.dataset.clone(),
            version: plan.version,
            predicate: plan.predicate.clone(),
            steps: plan.steps.clone(),
            tasks: plan
                .tasks
                .iter()
                .map(|t| ExplainTask {
                    index: t.index,
                    label: t.label.clone(),
                    files: t.files.len() as u64,
                    rows: t.num_rows(),
                    bytes: t.size_bytes(),
                    row_groups: t.num_row_groups(),
                    predicate: t.predicate.clone(),
                })
                .collect(),
        }
    }

    /// The JSON rendering (pretty-printed).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::InvalidArgument {
            what: "explain".to_string(),
            reason: format!("cannot render as JSON: {e}"),
        })
    }
}

fn step_name(step: PruneStepKind) -> &'static str {
    match step {
        PruneStepKind::Segments => "segments",
        PruneStepKind::Partitions => "partitions",
        PruneStepKind::Buckets => "buckets",
        PruneStepKind::Indices => "indices",
        PruneStepKind::Statistics => "statistics",
        PruneStepKind::RowGroups => "row groups",
    }
}

/// Bytes for people: `1.5 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl fmt::Display for Explain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dataset {} version {}", self.dataset, self.version)?;
        writeln!(
            f,
            "predicate: {}",
            self.predicate.as_deref().unwrap_or("(none)")
        )?;
        writeln!(f, "pruning:")?;
        for s in &self.steps {
            write!(
                f,
                "  {:<11} {:>9} -> {:<9} files  {:>10} -> {:<10}",
                step_name(s.step),
                s.files_before,
                s.files_after,
                human_bytes(s.bytes_before),
                human_bytes(s.bytes_after)
            )?;
            match (s.row_groups_before, s.row_groups_after) {
                (Some(before), Some(after)) => writeln!(f, " {before:>9} -> {after} row groups")?,
                _ => writeln!(f)?,
            }
        }
        writeln!(f, "tasks: {}", self.tasks.len())?;
        for t in &self.tasks {
            writeln!(
                f,
                "  #{:<4} {:<30} {:>6} files {:>6} row groups {:>10} rows {:>10}",
                t.index,
                t.label,
                t.files,
                t.row_groups,
                t.rows,
                human_bytes(t.bytes)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_and_json() {
        let explain = Explain {
            dataset: "mem://x".into(),
            version: 3,
            predicate: Some("a = 1".into()),
            steps: vec![PruneStep {
                step: PruneStepKind::Segments,
                files_before: 10,
                bytes_before: 10 << 20,
                files_after: 2,
                bytes_after: 2 << 20,
                row_groups_before: None,
                row_groups_after: None,
            }],
            tasks: vec![ExplainTask {
                index: 0,
                label: "a=1".into(),
                files: 2,
                rows: 100,
                bytes: 2 << 20,
                row_groups: 2,
                predicate: Some("a = 1".into()),
            }],
        };
        let text = explain.to_string();
        assert!(text.contains("segments"), "{text}");
        assert!(text.contains("10.0 MiB -> 2.0 MiB"), "{text}");
        let json = explain.to_json().unwrap();
        assert!(json.contains("\"step\": \"segments\""), "{json}");
        assert_eq!(serde_json::from_str::<Explain>(&json).unwrap(), explain);
    }
}
