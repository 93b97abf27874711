//! Frames over any blocking byte stream: a serial port, a pty, an in-memory buffer.

use std::io::{self, Read, Write};

use thiserror::Error;

use super::codec::{encode, Decoder, Frame, FrameError, DELIMITER};
use super::message::{LinkDrops, Message};

#[derive(Debug, Error)]
pub enum LinkError {
    /// A read timeout of the port shows up here as `ErrorKind::TimedOut` or `WouldBlock`.
    #[error("serial I/O")]
    Io(#[from] io::Error),
    /// A frame was dropped; the link has resynchronised and can be read again.
    #[error("dropped frame")]
    Frame(#[from] FrameError),
    #[error("the byte stream ended")]
    Closed,
}

/// Sends messages and receives frames over a `Read + Write` stream, numbering
/// the frames it sends.
#[derive(Debug)]
pub struct Link<T> {
    io: T,
    decoder: Decoder,
    seq: u16,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The last write failed part-way: the next frame starts with a
    /// delimiter, so that the peer drops the cut one alone.
    torn: bool,
}

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 512;

impl<T: Read + Write> Link<T> {
    pub fn new(io: T) -> Link<T> {
        Link {
            io,
            decoder: Decoder::new(),
            seq: 0,
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            torn: false,
        }
    }

    /// Sends a lone delimiter, so that the peer drops whatever partial frame it holds.
    pub fn resync(&mut self) -> Result<(), LinkError> {
        self.write(&[DELIMITER])
    }

    /// Sends one frame; `more` says that further frames of the same answer follow.
    pub fn send(&mut self, request_id: u32, message: Message, more: bool) -> Result<(), LinkError> {
        let frame = Frame {
            seq: self.seq,
            request_id,
            more,
            message,
        };
        let bytes = encode(&frame)?;
        self.seq = self.seq.wrapping_add(1);
        if self.torn {
            self.resync()?;
        }
        self.write(&bytes)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        let written = self.io.write_all(bytes).and_then(|()| self.io.flush());
        self.torn = written.is_err();
        Ok(written?)
    }

    /// Sends the frames of one answer, flagging all but the last with `more`.
    pub fn send_answer(
        &mut self,
        request_id: u32,
        messages: Vec<Message>,
    ) -> Result<(), LinkError> {
        let last = messages.len().saturating_sub(1);
        for (i, message) in messages.into_iter().enumerate() {
            self.send(request_id, message, i < last)?;
        }
        Ok(())
    }

    /// Blocks until the next frame ends, or the stream fails, times out or ends.
    ///
    /// # Errors
    /// [`LinkError::Frame`] for a dropped frame (read on to resynchronise),
    /// [`LinkError::Io`] for the stream's errors and timeouts,
    /// [`LinkError::Closed`] at the end of the stream.
    pub fn recv(&mut self) -> Result<Frame, LinkError> {
        loop {
            if self.start == self.end {
                self.end = match self.io.read(&mut self.buf) {
                    Ok(0) => return Err(LinkError::Closed),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                };
                self.start = 0;
            }
            let (used, result) = self.decoder.decode(&self.buf[self.start..self.end]);
            self.start += used;
            if let Some(result) = result {
                return Ok(result?);
            }
        }
    }

    /// Frames dropped by the receiving side so far, by reason.
    pub fn drops(&self) -> LinkDrops {
        self.decoder.drops()
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    pub fn into_inner(self) -> T {
        self.io
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::sync::Mutex;
    use std::time::Duration;

    use serialport::TTYPort;

    use super::*;
    use crate::serial::message::{ErrorCode, ErrorReply, Hello};
    use crate::serial::samples::sample_messages;

    /// Reads from a fixed input, records what is written.
    struct Duplex {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Duplex {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // One byte at a time: the worst case for framing.
            let n = buf.len().min(1);
            self.input.read(&mut buf[..n])
        }
    }

    impl Write for Duplex {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Takes `room` bytes, then times out as a line nobody reads does.
    struct Choked {
        room: usize,
        output: Vec<u8>,
    }

    impl Read for Choked {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Ok(0)
        }
    }

    impl Write for Choked {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room);
            if n == 0 {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.room -= n;
            self.output.write(&buf[..n])
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_frame_cut_by_a_timeout_is_dropped_alone_by_the_peer() {
        let mut writer = Link::new(Choked { room: 5, output: Vec::new() });
        let cut = writer.send(1, Message::Hello(Hello { client: "cut short".into() }), false);
        assert!(matches!(cut, Err(LinkError::Io(e)) if e.kind() == io::ErrorKind::TimedOut));
        writer.io.room = usize::MAX;
        writer.send(2, Message::GetStatus, false).expect("written once the line drains");
        let mut reader = Link::new(Duplex { input: Cursor::new(writer.into_inner().output), output: Vec::new() });
        assert!(matches!(reader.recv(), Err(LinkError::Frame(_))), "the cut frame is dropped");
        let frame = reader.recv().expect("the next frame");
        assert_eq!((frame.request_id, frame.message), (2, Message::GetStatus));
    }

    /// pty pairs are not thread-safe to create (ptsname): one test at a time.
    static PTY: Mutex<()> = Mutex::new(());

    #[test]
    fn a_link_reads_back_what_a_link_wrote() {
        let mut writer = Link::new(Duplex {
            input: Cursor::new(Vec::new()),
            output: Vec::new(),
        });
        writer.resync().expect("written");
        writer.send_answer(5, sample_messages()).expect("written");
        let bytes = writer.into_inner().output;
        let mut reader = Link::new(Duplex {
            input: Cursor::new(bytes),
            output: Vec::new(),
        });
        let count = sample_messages().len();
        for (i, message) in sample_messages().into_iter().enumerate() {
            let frame = reader.recv().expect("frame");
            assert_eq!(
                (frame.seq, frame.request_id, frame.more),
                (i as u16, 5, i + 1 < count)
            );
            assert_eq!(frame.message, message);
        }
        assert!(matches!(reader.recv(), Err(LinkError::Closed)));
    }

    #[test]
    fn a_dropped_frame_is_reported_and_the_next_one_read() {
        // Valid COBS for 2 bytes: too short for a header.
        let mut bytes = vec![0x03, 0x22, 0x33, 0];
        bytes.extend(
            encode(&Frame {
                seq: 1,
                request_id: 2,
                more: false,
                message: Message::GetStatus,
            })
            .expect("encodes"),
        );
        let mut link = Link::new(Duplex {
            input: Cursor::new(bytes),
            output: Vec::new(),
        });
        assert!(matches!(
            link.recv(),
            Err(LinkError::Frame(FrameError::Truncated))
        ));
        assert_eq!(link.recv().expect("frame").message, Message::GetStatus);
        assert_eq!(link.drops().truncated, 1);
    }

    #[test]
    fn frames_cross_a_pseudo_terminal_both_ways() {
        let _serial = PTY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (mut daemon_end, mut client_end) = TTYPort::pair().expect("pty pair");
        for end in [&mut daemon_end, &mut client_end] {
            serialport::SerialPort::set_timeout(end, Duration::from_secs(5)).expect("timeout");
        }
        let mut daemon = Link::new(daemon_end);
        let mut client = Link::new(client_end);

        client.resync().expect("sent");
        client
            .send(
                9,
                Message::Hello(Hello {
                    client: "pty test".into(),
                }),
                false,
            )
            .expect("sent");
        let frame = daemon.recv().expect("received");
        assert_eq!(
            (frame.request_id, frame.message),
            (
                9,
                Message::Hello(Hello {
                    client: "pty test".into()
                })
            )
        );

        // Larger than a pty's line buffer: exercises partial reads and writes.
        let long = "x".repeat(3000);
        let reply = Message::Error(ErrorReply {
            code: ErrorCode::Internal,
            message: long,
        });
        daemon
            .send_answer(9, vec![reply.clone(), Message::GetStatus])
            .expect("sent");
        let first = client.recv().expect("received");
        assert_eq!(
            (first.request_id, first.more, first.message),
            (9, true, reply)
        );
        assert!(!client.recv().expect("received").more);
    }
}
