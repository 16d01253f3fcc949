//! The producers as the daemon runs them: an object's bytes read and evaluated on a worker
//! thread, an event evaluated at once, and what they found folded into [`Findings`], counted
//! and logged once per object or event.

use std::time::Instant;

use tracing::{info, warn};

use super::Daemon;
use super::message::WorkError;
use crate::aws::Fault;
use crate::cloudtrail;
use crate::finding::Findings;
use crate::finding::fold::Folder;
use crate::intake::notice::{Event, ObjectRef};
use crate::pipeline::{self, LogReport, Outcome};
use crate::telemetry::Dropped;
use crate::telemetry::metrics::AlertLabels;

/// What reading one log object came to.
pub(super) struct ObjectRead {
    pub findings: Findings,
    pub records: u64,
    /// Read by this message (not skipped, gone, or read by an earlier one): once what it
    /// raised is committed, the object is recorded as read.
    pub fresh: bool,
}

impl Daemon {
    /// Evaluates a CloudTrail event that EventBridge delivered: no log file to read.
    pub(super) async fn read_event(&self, event: &Event) -> Result<Findings, WorkError> {
        let source = event.source();
        let mut folder = Folder::new();
        let report = pipeline::event(
            &self.rules,
            &source,
            event.record.as_bytes(),
            &mut |key, alert| folder.add(key(), alert),
        )
        .map_err(|e| WorkError::Event {
            event: source.clone(),
            message: e.to_string(),
        })?;
        self.metrics.events.inc();
        self.metrics.records.inc();
        let duplicates = report.duplicates;
        let findings = self.findings(source, folder, report);
        info!(
            incidents = findings.folds.len(),
            rechecks = findings.rechecks.len(),
            duplicates,
            "event processed"
        );
        Ok(findings)
    }

    /// Folds a producer's alerts into findings, counting them and reporting what the
    /// correlation batch and the re-checks left out.
    fn findings(&self, source: String, folder: Folder, report: LogReport) -> Findings {
        let correlation = report.correlation;
        let folds = folder.finish();
        for fold in &folds {
            self.metrics
                .alerts
                .get_or_create(&AlertLabels {
                    rule: fold.key.rule.clone(),
                    level: fold.level().to_string(),
                })
                .inc_by(fold.stats.count);
        }
        for (correlation_index, count, group) in correlation.dropped() {
            let rule = &self.rules.rules()[self.rules.correlations()[correlation_index].rule];
            Dropped {
                what: "correlation_events",
                count,
                source: &source,
                detail: format!(
                    "correlation {} kept its per-source share; first group left out: {:?}",
                    rule.name, group.0
                ),
            }
            .report(&self.metrics);
        }
        Dropped {
            what: "posture_rechecks",
            count: report.rechecks_over,
            source: &source,
            detail: format!(
                "re-checked the first {} resources whose posture changed; the next audit covers the rest",
                report.rechecks.len()
            ),
        }
        .report(&self.metrics);
        Findings {
            source,
            folds,
            correlation,
            rechecks: report.rechecks,
            ..Findings::default()
        }
    }

    /// Reads one object: its findings and how many records it held.
    pub(super) async fn read_object(&self, obj: &ObjectRef) -> Result<ObjectRead, WorkError> {
        let started = Instant::now();
        let source = obj.to_string();
        let nothing = |fresh| ObjectRead {
            findings: Findings::default(),
            records: 0,
            fresh,
        };
        if let Some(reason) = cloudtrail::skip(&source) {
            self.metrics.objects.inc();
            info!(reason, "object skipped");
            return Ok(nothing(false));
        }
        // A notification sent again (S3 delivers at least once; a second `backfill` of the
        // same days) finds the object read by an earlier message: what it raised is committed
        // already, and reading it again would page its incidents again once they closed.
        if self
            .edges
            .store
            .object_read(&source)
            .await
            .map_err(|e| WorkError::Commit(e.into()))?
        {
            self.metrics.objects.inc();
            self.metrics.objects_already_read.inc();
            info!("object already read and committed by an earlier message; nothing to do");
            return Ok(nothing(false));
        }
        let permit = self
            .readers
            .acquire()
            .await
            .expect("the reader semaphore is never closed");
        let body = match self.edges.objects.open(&obj.bucket, &obj.key).await {
            Ok(body) => body,
            Err(e) if e.fault() == Fault::Gone => {
                self.metrics.objects.inc();
                warn!(error = %e, "object is gone; nothing to read");
                return Ok(nothing(false));
            }
            Err(e) => return Err(e.into()),
        };
        let rules = self.rules.clone();
        let cap = self.settings.max_decompressed_bytes;
        let name = source.clone();
        let (folder, read) = tokio::task::spawn_blocking(move || {
            let mut folder = Folder::new();
            let read = pipeline::object(&rules, &name, body, cap, &mut |key, alert| {
                folder.add(key(), alert)
            });
            (folder, read)
        })
        .await
        .map_err(|_| WorkError::Worker(obj.clone()))?;
        drop(permit);
        self.metrics.objects.inc();
        let report = read?;
        self.metrics.records.inc_by(report.records);
        if let Outcome::Failed(e) = &report.outcome {
            warn!(error = %e, records = report.records, "log file is damaged; raised log-file-unreadable");
        }
        if let Some(what) = report.skipped.describe() {
            Dropped {
                what: "records_unparseable",
                count: report.skipped.count,
                source: &source,
                detail: what,
            }
            .report(&self.metrics);
        }
        let (records, bytes, skipped, duplicates) = (
            report.records,
            report.bytes,
            report.skipped.count,
            report.duplicates,
        );
        let findings = self.findings(source, folder, report);
        let alerts: u64 = findings.folds.iter().map(|f| f.stats.count).sum();
        info!(
            records,
            bytes,
            alerts,
            incidents = findings.folds.len(),
            rechecks = findings.rechecks.len(),
            skipped,
            duplicates,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "object processed"
        );
        Ok(ObjectRead {
            findings,
            records,
            fresh: true,
        })
    }
}
