//! Health of the operator's inputs (Docker, the manifest directory), for `/readyz` and
//! the metrics. Written by the input loops and the reconciles, read by the admin API.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Health of the operator's inputs, for `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    docker_ok: AtomicBool,
    docker_error: Mutex<Option<String>>,
    /// Full container lists taken (successful or not).
    pub relists: AtomicU64,
    /// Reads of the manifest directory attempted (successful or not).
    pub manifest_reads: AtomicU64,
}

impl Health {
    /// Records the outcome of a Docker call; logs when Docker stops or starts answering.
    pub fn docker(&self, result: Result<(), String>) {
        let ok = result.is_ok();
        let was = self.docker_ok.swap(ok, Ordering::Relaxed);
        match &result {
            Err(e) if was => tracing::warn!("Docker became unreachable: {e}"),
            Ok(()) if !was => tracing::info!("Docker answers"),
            _ => {}
        }
        *self.docker_error.lock().unwrap_or_else(|e| e.into_inner()) = result.err();
    }

    /// Whether the last Docker call reached the daemon, and the error if not.
    pub fn docker_status(&self) -> (bool, Option<String>) {
        (
            self.docker_ok.load(Ordering::Relaxed),
            self.docker_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}
