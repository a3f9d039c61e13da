//! Running a compared plan: every job that needs copying goes through one
//! engine run, whatever the mix of options, so they share one ledger (a
//! blob two jobs need crosses the wire once) and one concurrency budget.

use std::time::Instant;

use super::{Job, State};
use crate::report::{ImageReport, RunReport};
use crate::store::ImageRef;
use crate::transfer::{CopyJob, Engine};

/// Run the plan: copy the jobs to copy (by the digest compared, so what
/// was compared is what is copied even if the source tag moves meanwhile)
/// and those never compared (as named); report every job, in order:
/// current ones as current, ones that failed while planning as failed.
pub async fn execute(jobs: &[Job], engine: &Engine) -> RunReport {
    let started = Instant::now();
    // Sized up front: at 10,000 images a vector grown by doubling holds
    // room for 16,384.
    let mut to_run = Vec::with_capacity(jobs.len());
    let mut ran = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let source_ref = match &job.state {
            State::Copy { source_digest, .. } => ImageRef::Digest(source_digest.clone()),
            State::Pending => job.source_ref.clone(),
            State::Current { .. } | State::Failed { .. } => continue,
        };
        let (Some(source), Some(target)) = (&job.source, &job.target) else {
            continue;
        };
        to_run.push(CopyJob {
            source: source.clone(),
            source_ref,
            target: target.clone(),
            target_tag: job.target_tag.clone(),
            target_digest: job.target_digest.clone(),
            selection: job.selection.clone(),
            source_label: job.source_label.clone(),
            target_label: job.target_label.clone(),
        });
        ran.push(i);
    }
    // The engine reports the jobs it ran, in their order: each goes to its
    // job's place as the report is built, with no second vector by index.
    let mut run = engine.run(to_run).await.images.into_iter();
    let mut ran = ran.into_iter().peekable();
    let images = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| {
            if ran.next_if_eq(&i).is_some() {
                if let Some(report) = run.next() {
                    return report;
                }
            }
            let base = ImageReport {
                source: job.source_label.clone(),
                target: job.target_label.clone(),
                ..ImageReport::default()
            };
            match &job.state {
                State::Current { digest } => ImageReport {
                    source_digest: Some(digest.clone()),
                    target_digest: Some(digest.clone()),
                    current: true,
                    ..base
                },
                State::Failed { error, kind } => ImageReport {
                    error: Some(error.clone()),
                    error_kind: Some(*kind),
                    ..base
                },
                State::Copy { .. } | State::Pending => ImageReport {
                    error: Some("the target was not opened".into()),
                    error_kind: Some(registry_client::ErrorKind::InvalidInput),
                    ..base
                },
            }
        })
        .collect();
    RunReport::new(images, started.elapsed())
}
