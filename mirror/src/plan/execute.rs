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
    let mut run = engine.run(to_run).await.images.into_iter();
    let mut from_engine: Vec<Option<ImageReport>> = vec![None; jobs.len()];
    for i in ran {
        from_engine[i] = run.next();
    }
    let images = jobs
        .iter()
        .zip(from_engine)
        .map(|(job, report)| {
            let base = ImageReport {
                source: job.source_label.clone(),
                target: job.target_label.clone(),
                ..ImageReport::default()
            };
            match (&job.state, report) {
                (_, Some(r)) => r,
                (State::Current { digest }, None) => ImageReport {
                    source_digest: Some(digest.clone()),
                    target_digest: Some(digest.clone()),
                    current: true,
                    ..base
                },
                (State::Failed { error, kind }, None) => ImageReport {
                    error: Some(error.clone()),
                    error_kind: Some(*kind),
                    ..base
                },
                (_, None) => ImageReport {
                    error: Some("the target was not opened".into()),
                    error_kind: Some(registry_client::ErrorKind::InvalidInput),
                    ..base
                },
            }
        })
        .collect();
    RunReport::new(images, started.elapsed())
}
