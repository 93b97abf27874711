//! Opening the serial device with the protocol's line settings.

use std::time::Duration;

use anyhow::{Context, Result};
use serialport::{DataBits, FlowControl, Parity, SerialPort, StopBits};

/// How long a read waits for bytes (short, so that a reader notices a stop)
/// and a write for room (a line nobody reads then drops what it cannot write).
pub const READ_TIMEOUT: Duration = Duration::from_millis(100);

/// Opens `path` at `baud`, 8N1, no flow control (docs/PROTOCOL.md, section 1).
///
/// # Errors
/// The device cannot be opened or configured; the error names it.
pub fn open_port(path: &str, baud: u32) -> Result<Box<dyn SerialPort>> {
    serialport::new(path, baud)
        .data_bits(DataBits::Eight)
        .parity(Parity::None)
        .stop_bits(StopBits::One)
        .flow_control(FlowControl::None)
        .timeout(READ_TIMEOUT)
        .open()
        .with_context(|| format!("opening serial port {path} at {baud} baud"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_is_named_in_the_error() {
        let Err(error) = open_port("/dev/maskd-no-such-tty", 115_200) else {
            panic!("opened a device that does not exist")
        };
        let text = format!("{error:#}");
        assert!(text.contains("/dev/maskd-no-such-tty"), "{text}");
    }
}
