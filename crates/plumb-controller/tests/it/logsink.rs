//! A log sink tests read back (kept out of `common`, which the benches include).

/// A log sink the test reads back (nextest runs each test in its own process, so the
/// global subscriber is this test's alone).
#[derive(Clone, Default)]
pub struct LogSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogSink {
    pub fn install() -> LogSink {
        let sink = LogSink::default();
        let writer = sink.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,plumb_controller=debug,plumb_eks=debug,plumb_source=debug,plumb_sops=debug",
            ))
            .with_writer(move || writer.clone())
            .init();
        sink
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
