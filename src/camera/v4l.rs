//! A V4L2 camera (UVC webcams, CSI bridges) through nokhwa, delivering MJPEG or
//! YUYV frames that are decoded here: MJPEG by libjpeg-turbo as the reference
//! decodes JPEG ([`crate::picture::decode_jpeg`]), YUYV by nokhwa's BT.601
//! converter.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use image::RgbImage;
use nokhwa::utils::{
    yuyv422_to_rgb, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};
use nokhwa::NokhwaError;
use serde::Deserialize;

use crate::picture;
use crate::pipeline::{CaptureError, FrameSource};

/// Failed frames in a row after which the stream is reopened: a camera that
/// keeps sending garbage or failing reads is usually fixed by a restart.
pub const MAX_FAILED_FRAMES: u32 = 30;

const MAX_SIDE: u32 = 4096;
const MAX_FPS: u32 = 120;

/// The `[source]` settings of `kind = "camera"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CameraSettings {
    /// `0` for /dev/video0, or a path such as "/dev/video0" or a /dev/v4l/by-id/ link.
    pub device: CameraDevice,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub format: PixelFormat,
}

impl Default for CameraSettings {
    fn default() -> CameraSettings {
        CameraSettings {
            device: CameraDevice::Index(0),
            width: 640,
            height: 480,
            fps: 15,
            format: PixelFormat::Auto,
        }
    }
}

impl CameraSettings {
    /// Checks the ranges serde cannot.
    ///
    /// # Errors
    /// Names the first bad key and its value.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, value, min) in [("width", self.width, 16), ("height", self.height, 16)] {
            if !(min..=MAX_SIDE).contains(&value) {
                bail!("source.{key} must be {min}..={MAX_SIDE}, got {value}");
            }
        }
        if !(1..=MAX_FPS).contains(&self.fps) {
            bail!("source.fps must be 1..={MAX_FPS}, got {}", self.fps);
        }
        if self.format == PixelFormat::Yuyv && self.width % 2 != 0 {
            bail!(
                "source.width must be even for format \"yuyv\" (two pixels share their colour), got {}",
                self.width
            );
        }
        if let CameraDevice::Path(path) = &self.device {
            if path.as_os_str().is_empty() {
                bail!("source.device must be an index or a path such as \"/dev/video0\", got \"\"");
            }
        }
        Ok(())
    }
}

/// Which camera: V4L2 numbers its devices /dev/video0, /dev/video1, ...
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CameraDevice {
    Index(u32),
    Path(PathBuf),
}

impl CameraDevice {
    fn path(&self) -> PathBuf {
        match self {
            CameraDevice::Index(index) => PathBuf::from(format!("/dev/video{index}")),
            CameraDevice::Path(path) => path.clone(),
        }
    }
}

/// The pixel format asked of the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// MJPEG if the camera offers it (less USB bandwidth at high resolutions), else YUYV.
    Auto,
    Mjpeg,
    Yuyv,
}

impl PixelFormat {
    fn candidates(self) -> &'static [FrameFormat] {
        match self {
            PixelFormat::Auto => &[FrameFormat::MJPEG, FrameFormat::YUYV],
            PixelFormat::Mjpeg => &[FrameFormat::MJPEG],
            PixelFormat::Yuyv => &[FrameFormat::YUYV],
        }
    }
}

/// A V4L2 camera as a [`FrameSource`]; [`FrameSource::open`] negotiates the
/// format closest to the settings and starts streaming.
pub struct Camera {
    settings: CameraSettings,
    stream: Option<Stream>,
    failed_in_a_row: u32,
}

/// An open, streaming camera.
struct Stream {
    camera: nokhwa::Camera,
    format: CameraFormat,
}

// SAFETY: nokhwa::Camera is not Send only because it boxes its backend as a
// plain `dyn` trait object. With input-v4l alone that backend is the V4L2 one: a
// file descriptor and buffers mmap'd from it, both usable from any thread, and
// the Stream is owned and used by one thread at a time (nokhwa itself declares
// Camera Send under its "camera-sync-impl" feature).
unsafe impl Send for Stream {}

impl Camera {
    /// A camera for `settings` (already validated), not yet opened.
    pub fn new(settings: CameraSettings) -> Camera {
        Camera {
            settings,
            stream: None,
            failed_in_a_row: 0,
        }
    }

    fn open_stream(&self) -> anyhow::Result<Stream> {
        let path = self.settings.device.path();
        let index = probe(&path)?;
        let mut refusals = Vec::new();
        for &format in self.settings.format.candidates() {
            let wanted = CameraFormat::new_from(
                self.settings.width,
                self.settings.height,
                format,
                self.settings.fps,
            );
            let request = RequestedFormat::with_formats(
                RequestedFormatType::Closest(wanted),
                self.settings.format.candidates(),
            );
            match nokhwa::Camera::new(CameraIndex::Index(index), request) {
                Ok(mut camera) => {
                    camera
                        .open_stream()
                        .map_err(|e| explain(&path, e))
                        .context("starting the stream")?;
                    let format = camera.camera_format();
                    if format != wanted {
                        log::warn!(
                            "{}: asked for {wanted}, the camera gives {format}",
                            path.display()
                        );
                    }
                    return Ok(Stream { camera, format });
                }
                Err(error) => refusals.push(format!("{format}: {}", explain(&path, error))),
            }
        }
        bail!(
            "{} has no usable mode near {}x{} at {} fps ({})",
            path.display(),
            self.settings.width,
            self.settings.height,
            self.settings.fps,
            refusals.join("; ")
        )
    }

    /// Counts a lost frame; too many in a row become a disconnection.
    fn lost(&mut self, error: anyhow::Error) -> CaptureError {
        self.failed_in_a_row += 1;
        if self.failed_in_a_row >= MAX_FAILED_FRAMES {
            self.failed_in_a_row = 0;
            self.stream = None;
            CaptureError::Disconnected(
                error.context(format!("{MAX_FAILED_FRAMES} frames in a row failed")),
            )
        } else {
            CaptureError::Frame(error)
        }
    }
}

impl FrameSource for Camera {
    fn open(&mut self) -> Result<(), CaptureError> {
        self.stream = None;
        self.failed_in_a_row = 0;
        let stream = self.open_stream().map_err(CaptureError::Disconnected)?;
        log::info!("{}: streaming {}", self.describe(), stream.format);
        self.stream = Some(stream);
        Ok(())
    }

    fn next_frame(&mut self) -> Result<RgbImage, CaptureError> {
        let Some(stream) = &mut self.stream else {
            return Err(CaptureError::Disconnected(anyhow!(
                "{} is not open",
                self.describe()
            )));
        };
        let buffer = match stream.camera.frame() {
            Ok(buffer) => buffer,
            Err(error) if device_gone(&error) => {
                self.stream = None;
                return Err(CaptureError::Disconnected(anyhow!(
                    "{}: {error}",
                    self.describe()
                )));
            }
            Err(error) => return Err(self.lost(anyhow!("reading a frame: {error}"))),
        };
        let resolution = buffer.resolution();
        match decode(
            buffer.source_frame_format(),
            resolution.width(),
            resolution.height(),
            buffer.buffer(),
        ) {
            Ok(image) => {
                self.failed_in_a_row = 0;
                Ok(image)
            }
            Err(error) => Err(self.lost(error)),
        }
    }

    fn describe(&self) -> String {
        format!("camera {}", self.settings.device.path().display())
    }
}

/// Checks that the device node opens, with advice when it does not, and
/// returns its V4L2 index (nokhwa opens devices by index).
fn probe(path: &Path) -> anyhow::Result<u32> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|error| explain_open(path, &error))?;
    // Follows /dev/v4l/by-id/ and by-path/ links to the /dev/videoN they name.
    let real = path
        .canonicalize()
        .with_context(|| format!("resolving {}", path.display()))?;
    video_index(&real).with_context(|| {
        format!(
            "{} is not a V4L2 video device (/dev/videoN)",
            path.display()
        )
    })
}

fn video_index(path: &Path) -> Option<u32> {
    path.file_name()?
        .to_str()?
        .strip_prefix("video")?
        .parse()
        .ok()
}

fn explain_open(path: &Path, error: &io::Error) -> anyhow::Error {
    let path = path.display();
    match error.kind() {
        io::ErrorKind::NotFound => anyhow!(
            "camera {path} does not exist: check source.device and that the camera is connected (ls /dev/video*)"
        ),
        io::ErrorKind::PermissionDenied => anyhow!(
            "no permission to open camera {path}: the daemon's user needs the group that owns it, usually `video` (usermod -aG video USER)"
        ),
        _ => anyhow!("cannot open camera {path}: {error}"),
    }
}

/// nokhwa keeps only the text of the OS error, so errno is read back from it.
fn errno(error: &NokhwaError) -> Option<i32> {
    let text = error.to_string();
    let start = text.rfind("(os error ")? + "(os error ".len();
    text[start..].split(')').next()?.parse().ok()
}

const ENXIO: i32 = 6;
const EBADF: i32 = 9;
const EBUSY: i32 = 16;
const ENODEV: i32 = 19;

/// Whether the device is gone (unplugged, driver unbound), not just one frame.
fn device_gone(error: &NokhwaError) -> bool {
    matches!(errno(error), Some(ENODEV | ENXIO | EBADF))
}

fn explain(path: &Path, error: NokhwaError) -> anyhow::Error {
    if errno(&error) == Some(EBUSY) {
        anyhow!(
            "camera {} is busy: another process is streaming from it (fuser {}): {error}",
            path.display(),
            path.display()
        )
    } else {
        anyhow!("{error}")
    }
}

/// Decodes one captured frame of `format` and the negotiated size to RGB.
fn decode(format: FrameFormat, width: u32, height: u32, bytes: &[u8]) -> anyhow::Result<RgbImage> {
    match format {
        FrameFormat::MJPEG => picture::decode_jpeg(bytes).context("decoding an MJPEG frame"),
        FrameFormat::YUYV => yuyv_to_rgb(width, height, bytes),
        other => bail!("frame format {other} is not decoded"),
    }
}

/// Converts packed YUYV 4:2:2 (Y0 U Y1 V per pixel pair) to RGB. Rows may be
/// padded: the stride is whatever whole number of bytes per row the frame holds.
fn yuyv_to_rgb(width: u32, height: u32, bytes: &[u8]) -> anyhow::Result<RgbImage> {
    let row = 2 * width as usize;
    let rows = height as usize;
    if width % 2 != 0 || rows == 0 {
        bail!("YUYV needs an even width and some rows, got {width}x{height}");
    }
    if bytes.len() < row * rows || bytes.len() % rows != 0 {
        bail!(
            "short or ragged YUYV frame: {} bytes for {width}x{height} (at least {} expected)",
            bytes.len(),
            row * rows
        );
    }
    let stride = bytes.len() / rows;
    let mut rgb = Vec::with_capacity(3 * width as usize * rows);
    for line in bytes.chunks_exact(stride) {
        rgb.extend(yuyv422_to_rgb(&line[..row], false).map_err(|e| anyhow!("{e}"))?);
    }
    RgbImage::from_raw(width, height, rgb).context("YUYV conversion gave the wrong size")
}

#[cfg(test)]
mod tests {
    use image::Rgb;

    use super::*;

    #[test]
    fn yuyv_converts_known_colours() {
        // Studio-range BT.601: black, white, red, blue, grey; two pixels per 4 bytes.
        let bytes = [
            16, 128, 235, 128, //
            81, 90, 81, 240, // The pair shares U=90, V=240: red.
            41, 240, 126, 110,
        ];
        let image = yuyv_to_rgb(6, 1, &bytes).expect("converts");
        let pixels: Vec<[u8; 3]> = image.pixels().map(|p| p.0).collect();
        assert_eq!(pixels[..2], [[0, 0, 0], [255, 255, 255]]);
        assert_eq!(pixels[2..4], [[255, 0, 0], [255, 0, 0]]);
        assert_eq!(pixels[4], [0, 0, 255]);
        assert_eq!(pixels[5], [99, 99, 255]);
    }

    #[test]
    fn yuyv_skips_row_padding() {
        // 2x2 with a 6-byte stride: 4 bytes of pixels, 2 of padding per row.
        let bytes = [16, 128, 16, 128, 9, 9, 235, 128, 235, 128, 9, 9];
        let image = yuyv_to_rgb(2, 2, &bytes).expect("converts");
        assert_eq!(image.get_pixel(1, 0), &Rgb([0, 0, 0]));
        assert_eq!(image.get_pixel(0, 1), &Rgb([255, 255, 255]));
    }

    #[test]
    fn short_yuyv_frames_are_errors() {
        let error = yuyv_to_rgb(4, 2, &[16; 12]).expect_err("needs 16 bytes");
        assert!(error.to_string().contains("12 bytes for 4x2"), "{error}");
    }

    /// An MJPEG-style 4:2:2 frame without Huffman tables, and Pillow's pixels
    /// for it (tests/golden/jpeg/).
    fn mjpeg_frame() -> (Vec<u8>, RgbImage) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/jpeg");
        let jpeg = std::fs::read(dir.join("coffee_mjpeg_no_dht.jpg")).expect("the fixture");
        (jpeg, image::open(dir.join("coffee_mjpeg_no_dht.png")).expect("its pixels").to_rgb8())
    }

    #[test]
    fn mjpeg_frames_decode_as_the_reference_decodes_them() {
        let (jpeg, pillow) = mjpeg_frame();
        let image = decode(FrameFormat::MJPEG, pillow.width(), pillow.height(), &jpeg).expect("decodes");
        assert_eq!(image, pillow);
    }

    #[test]
    fn a_corrupt_jpeg_loses_one_frame_only() {
        let (mut jpeg, _) = mjpeg_frame();
        jpeg.truncate(jpeg.len() / 2);
        let mut camera = Camera::new(CameraSettings::default());
        let error = decode(FrameFormat::MJPEG, 67, 47, &jpeg).expect_err("truncated");
        assert!(format!("{error:#}").contains("decoding an MJPEG frame"), "{error:#}");
        assert!(matches!(camera.lost(error), CaptureError::Frame(_)));
        assert_eq!(camera.failed_in_a_row, 1);
    }

    #[test]
    fn frames_failing_in_a_row_force_a_reopen() {
        let mut camera = Camera::new(CameraSettings::default());
        for _ in 1..MAX_FAILED_FRAMES {
            assert!(matches!(
                camera.lost(anyhow!("bad")),
                CaptureError::Frame(_)
            ));
        }
        assert!(matches!(
            camera.lost(anyhow!("bad")),
            CaptureError::Disconnected(_)
        ));
        assert_eq!(camera.failed_in_a_row, 0);
    }

    #[test]
    fn a_vanished_device_is_a_disconnection_other_read_errors_are_not() {
        let gone = NokhwaError::ReadFrameError("No such device (os error 19)".into());
        assert!(device_gone(&gone));
        let io = NokhwaError::ReadFrameError("Input/output error (os error 5)".into());
        assert!(!device_gone(&io));
        assert!(!device_gone(&NokhwaError::ReadFrameError("odd".into())));
    }

    #[test]
    fn a_busy_camera_is_explained() {
        let busy = NokhwaError::OpenStreamError("Device or resource busy (os error 16)".into());
        let text = explain(Path::new("/dev/video0"), busy).to_string();
        assert!(
            text.contains("/dev/video0 is busy: another process"),
            "{text}"
        );
    }

    #[test]
    fn opening_a_missing_camera_names_the_device_and_what_to_check() {
        let mut camera = Camera::new(CameraSettings {
            device: CameraDevice::Path("/dev/video-maskd-absent".into()),
            ..CameraSettings::default()
        });
        let error = camera.open().expect_err("no such device");
        assert!(matches!(error, CaptureError::Disconnected(_)));
        let text = error.to_string();
        assert!(
            text.contains("/dev/video-maskd-absent does not exist"),
            "{text}"
        );
        assert!(text.contains("source.device"), "{text}");
        assert!(matches!(
            camera.next_frame(),
            Err(CaptureError::Disconnected(_))
        ));
    }

    #[test]
    fn permission_problems_point_at_the_video_group() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let text = explain_open(Path::new("/dev/video0"), &denied).to_string();
        assert!(
            text.contains("/dev/video0") && text.contains("`video`"),
            "{text}"
        );
    }

    #[test]
    fn a_node_that_is_not_a_video_device_is_refused() {
        let error = probe(Path::new("/dev/null")).expect_err("not a camera");
        assert!(
            format!("{error:#}").contains("not a V4L2 video device"),
            "{error:#}"
        );
        assert_eq!(video_index(Path::new("/dev/video12")), Some(12));
    }

    #[test]
    fn settings_parse_with_defaults_and_reject_unknown_keys() {
        let settings: CameraSettings =
            toml::from_str("device = \"/dev/video2\"\nformat = \"yuyv\"").expect("parses");
        assert_eq!(settings.device, CameraDevice::Path("/dev/video2".into()));
        assert_eq!(settings.format, PixelFormat::Yuyv);
        assert_eq!(
            (settings.width, settings.height, settings.fps),
            (640, 480, 15)
        );
        let settings: CameraSettings = toml::from_str("device = 1").expect("parses");
        assert_eq!(settings.device, CameraDevice::Index(1));
        let error = toml::from_str::<CameraSettings>("fsp = 10").expect_err("typo");
        assert!(error.to_string().contains("fsp"), "{error}");
        let error = toml::from_str::<CameraSettings>("format = \"h264\"").expect_err("unknown");
        assert!(error.to_string().contains("h264"), "{error}");
    }

    #[test]
    fn validation_names_the_bad_key() {
        let bad = |settings: CameraSettings| settings.validate().expect_err("invalid").to_string();
        assert_eq!(
            bad(CameraSettings {
                fps: 0,
                ..CameraSettings::default()
            }),
            "source.fps must be 1..=120, got 0"
        );
        assert!(bad(CameraSettings {
            width: 9000,
            ..CameraSettings::default()
        })
        .starts_with("source.width must be"));
        assert!(bad(CameraSettings {
            width: 641,
            format: PixelFormat::Yuyv,
            ..CameraSettings::default()
        })
        .contains("even"));
        CameraSettings::default()
            .validate()
            .expect("defaults are valid");
    }
}
