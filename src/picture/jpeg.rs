//! JPEG decoding by libjpeg-turbo, with the settings Pillow decodes with.
//!
//! Pillow's `Image.open(path).convert("RGB")` runs libjpeg-turbo with its
//! defaults: the accurate integer IDCT (ISLOW) and "fancy" (triangular)
//! chroma upsampling; TurboJPEG's defaults are the same, and libjpeg-turbo's
//! SIMD code (SSE2/AVX2, NEON) gives the same pixels as its C code. So
//! YCbCr (4:2:0, 4:2:2, 4:4:4, ...), RGB, greyscale, baseline, progressive
//! and arithmetic-coded files all come out as Pillow gives them. Camera MJPEG
//! frames without Huffman tables decode too: libjpeg-turbo fills in the
//! standard tables (JPEG Annex K.3) that such frames leave out. EXIF
//! orientation is not applied, as Pillow's `Image.open` does not apply it.
//!
//! Four-channel files (CMYK, and YCCK, which libjpeg-turbo turns into CMYK)
//! are converted as Pillow converts them: it reads them inverted, as Adobe
//! writes them ("CMYK;I"), then applies its own `cmyk2rgb`.
//!
//! The `turbojpeg` crate wraps the same library but reports warnings and
//! errors alike; this module calls its raw bindings (`turbojpeg-sys`) to tell
//! them apart, since Pillow decodes through the warnings (stray bytes, a
//! corrupt scan) and stops only where the data ends early.

use std::ffi::{c_int, CStr};

use anyhow::{bail, ensure, Context, Result};
use image::RgbImage;
use turbojpeg_sys as tj;

/// Largest JPEG decoded, in pixels: Pillow's decompression-bomb limit
/// (twice `Image.MAX_IMAGE_PIXELS`), past which Pillow refuses images too.
/// A header can promise 65500x65500 pixels in a few hundred bytes.
pub const MAX_PIXELS: u64 = 2 * 89_478_485;

/// Progressive scans allowed in one image: real files have about ten; a
/// crafted file with thousands costs minutes of CPU (libjpeg-turbo's advice
/// for untrusted input).
const MAX_SCANS: c_int = 500;

/// libjpeg's warning when the data ends before the image does (JWRN_JPEG_EOF):
/// the rest of the image would be grey, and Pillow reports the file as
/// truncated, so it is an error here as well.
const TRUNCATED: &str = "Premature end of JPEG file";

/// Decodes one JPEG (a file's bytes or an MJPEG frame) to RGB, pixel for pixel
/// as Pillow's `Image.open(...).convert("RGB")` does.
///
/// # Errors
/// Not a JPEG, corrupt beyond decoding, truncated, of 12 or 16 bits per
/// sample (which Pillow does not read either), or over [`MAX_PIXELS`]; the
/// message is libjpeg-turbo's.
pub fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage> {
    let mut decompressor = Decompressor::new()?;
    decompressor.set(tj::TJPARAM_TJPARAM_SCANLIMIT, MAX_SCANS)?;
    // SAFETY: the handle is live; libjpeg-turbo reads `bytes.len()` bytes of `bytes`.
    let status = unsafe { tj::tj3DecompressHeader(decompressor.handle, bytes.as_ptr(), bytes.len() as tj::size_t) };
    decompressor.check(status).context("reading the JPEG header")?;
    // An abbreviated stream (tables only), or one cut before its frame header,
    // reads without error but has no size.
    let size = [tj::TJPARAM_TJPARAM_JPEGWIDTH, tj::TJPARAM_TJPARAM_JPEGHEIGHT].map(|param| decompressor.get(param));
    let [Ok(width @ 1..), Ok(height @ 1..)] = size.map(u32::try_from) else {
        bail!("reading the JPEG header: it gives no image size (the data ends early or holds only tables)");
    };
    let pixels = u64::from(width) * u64::from(height);
    ensure!(pixels <= MAX_PIXELS, "the JPEG is {width}x{height}, over the {MAX_PIXELS} pixels maskd decodes");
    let colorspace = decompressor.get(tj::TJPARAM_TJPARAM_COLORSPACE) as tj::TJCS;
    let four_channels = matches!(colorspace, tj::TJCS_TJCS_CMYK | tj::TJCS_TJCS_YCCK);
    let (format, channels) = if four_channels { (tj::TJPF_TJPF_CMYK, 4) } else { (tj::TJPF_TJPF_RGB, 3) };

    let mut decoded = vec![0u8; pixels as usize * channels];
    // SAFETY: `decoded` holds `height` rows of `width * channels` bytes, the
    // size TurboJPEG writes for this header and pixel format.
    let status = unsafe {
        tj::tj3Decompress8(
            decompressor.handle,
            bytes.as_ptr(),
            bytes.len() as tj::size_t,
            decoded.as_mut_ptr(),
            (width as usize * channels) as c_int,
            format,
        )
    };
    decompressor.check(status).context("decoding the JPEG")?;
    let rgb = if four_channels { inverted_cmyk_to_rgb(&decoded) } else { decoded };
    RgbImage::from_raw(width, height, rgb).context("the decoded JPEG has the wrong size")
}

/// Pillow's reading of a four-channel JPEG: the samples are inverted CMYK
/// (rawmode "CMYK;I"), converted by `cmyk2rgb` (libImaging/Convert.c):
/// `R = (255 - K) - (C * (255 - K)) / 255`, rounded as its `MULDIV255`.
fn inverted_cmyk_to_rgb(samples: &[u8]) -> Vec<u8> {
    fn muldiv255(a: u32, b: u32) -> u32 {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    }
    let mut rgb = Vec::with_capacity(samples.len() / 4 * 3);
    for pixel in samples.chunks_exact(4) {
        // Inverted K is the stored sample: 255 - (255 - k) = k.
        let not_k = u32::from(pixel[3]);
        for &sample in &pixel[..3] {
            let c = 255 - u32::from(sample);
            rgb.push((not_k - muldiv255(c, not_k)) as u8);
        }
    }
    rgb
}

/// A TurboJPEG decompression handle.
struct Decompressor {
    handle: tj::tjhandle,
}

impl Decompressor {
    fn new() -> Result<Decompressor> {
        // SAFETY: plain constructor; a null handle is checked below.
        let handle = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as c_int) };
        if handle.is_null() {
            // SAFETY: with a null handle TurboJPEG returns its global error text.
            bail!("libjpeg-turbo could not start a decompressor: {}", unsafe { message(handle) });
        }
        Ok(Decompressor { handle })
    }

    fn set(&mut self, param: tj::TJPARAM, value: c_int) -> Result<()> {
        // SAFETY: the handle is live.
        let status = unsafe { tj::tj3Set(self.handle, param as c_int, value) };
        self.check(status)
    }

    fn get(&self, param: tj::TJPARAM) -> c_int {
        // SAFETY: the handle is live.
        unsafe { tj::tj3Get(self.handle, param as c_int) }
    }

    /// The outcome of a call that returned `status`: success, success with a
    /// warning (logged), or the error. Truncated data is an error.
    fn check(&self, status: c_int) -> Result<()> {
        if status == 0 {
            return Ok(());
        }
        // SAFETY: the handle is live.
        let (code, text) = unsafe { (tj::tj3GetErrorCode(self.handle), message(self.handle)) };
        if code == tj::TJERR_TJERR_WARNING as c_int && !text.starts_with(TRUNCATED) {
            log::debug!("libjpeg-turbo warning, decoded anyway (as Pillow does): {text}");
            return Ok(());
        }
        bail!("libjpeg-turbo: {text}")
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.handle) }
    }
}

/// TurboJPEG's text for the last error or warning of `handle` (or, for a null
/// handle, of the last failed tj3Init).
///
/// # Safety
/// `handle` is null or live.
unsafe fn message(handle: tj::tjhandle) -> String {
    // SAFETY: TurboJPEG returns a NUL-terminated string it owns.
    unsafe { CStr::from_ptr(tj::tj3GetErrorStr(handle)) }.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// Every fixture in tests/golden/jpeg/ (models/make_jpeg_fixtures.py),
    /// one of each kind: 4:2:0, 4:2:2, 4:4:4, RGB, greyscale, Adobe CMYK,
    /// progressive, with an EXIF orientation, and an MJPEG-style frame
    /// without Huffman tables.
    const FIXTURES: [&str; 9] = [
        "chelsea_420",
        "coffee_422",
        "astronaut_444",
        "astronaut_rgb",
        "rocket_gray",
        "coffee_cmyk_adobe",
        "chelsea_progressive",
        "astronaut_exif_orientation",
        "coffee_mjpeg_no_dht",
    ];

    fn fixture(name: &str, extension: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/jpeg/{name}.{extension}"))
    }

    fn jpeg(name: &str) -> Vec<u8> {
        let path = fixture(name, "jpg");
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// Pillow's pixels for a fixture, stored beside it as a PNG.
    fn pillow(name: &str) -> RgbImage {
        let path = fixture(name, "png");
        image::open(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())).to_rgb8()
    }

    /// The markers of the segments before the first scan.
    fn markers(jpeg: &[u8]) -> Vec<u8> {
        let mut markers = Vec::new();
        let mut at = 2;
        while jpeg[at + 1] != 0xDA {
            markers.push(jpeg[at + 1]);
            at += 2 + usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        }
        markers
    }

    #[test]
    fn every_kind_of_jpeg_decodes_to_pillows_pixels() {
        let mut failures = Vec::new();
        for name in FIXTURES {
            let ours = decode_jpeg(&jpeg(name)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            let theirs = pillow(name);
            assert_eq!(ours.dimensions(), theirs.dimensions(), "{name}: size");
            let differing = ours.as_raw().iter().zip(theirs.as_raw()).filter(|(a, b)| a != b).count();
            if differing > 0 {
                let worst = ours.as_raw().iter().zip(theirs.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
                failures.push(format!("{name}: {differing} of {} samples differ, by up to {worst}", ours.as_raw().len()));
            }
        }
        assert!(failures.is_empty(), "pixels differ from Pillow's:\n{}", failures.join("\n"));
    }

    #[test]
    fn the_fixtures_are_the_kinds_they_are_named_after() {
        const DHT: u8 = 0xC4;
        const SOF2_PROGRESSIVE: u8 = 0xC2;
        const APP1_EXIF: u8 = 0xE1;
        const APP14_ADOBE: u8 = 0xEE;
        assert!(!markers(&jpeg("coffee_mjpeg_no_dht")).contains(&DHT));
        assert!(markers(&jpeg("coffee_422")).contains(&DHT));
        assert!(markers(&jpeg("chelsea_progressive")).contains(&SOF2_PROGRESSIVE));
        assert!(markers(&jpeg("astronaut_exif_orientation")).contains(&APP1_EXIF));
        assert!(markers(&jpeg("coffee_cmyk_adobe")).contains(&APP14_ADOBE));
    }

    #[test]
    fn exif_orientation_is_left_as_the_reference_leaves_it() {
        // Orientation 6 asks a viewer to turn the photo a quarter: the stored
        // 51x29 pixels come out as they are, not 29x51.
        let decoded = decode_jpeg(&jpeg("astronaut_exif_orientation")).unwrap();
        assert_eq!(decoded.dimensions(), (51, 29));
    }

    #[test]
    fn cmyk_conversion_matches_pillows_formula_at_the_extremes() {
        // Stored (inverted) samples: 255 is no ink, 0 full ink.
        assert_eq!(inverted_cmyk_to_rgb(&[255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(inverted_cmyk_to_rgb(&[0, 255, 255, 255]), [0, 255, 255]);
        assert_eq!(inverted_cmyk_to_rgb(&[255, 255, 255, 0]), [0, 0, 0]);
        // C = 128, K = 64: 191 - round(128 * 191 / 255) = 191 - 96.
        assert_eq!(inverted_cmyk_to_rgb(&[127, 127, 127, 191]), [95, 95, 95]);
    }

    #[test]
    fn truncated_and_corrupt_jpegs_are_errors() {
        let whole = jpeg("coffee_422");
        let scan = (1..whole.len()).find(|&i| whole[i - 1] == 0xFF && whole[i] == 0xDA).expect("a scan");
        let in_the_scan = &whole[..(scan + whole.len()) / 2];
        let error = format!("{:#}", decode_jpeg(in_the_scan).unwrap_err());
        assert!(error.contains("decoding the JPEG") && error.contains(TRUNCATED), "{error}");
        for cut in [&whole[..40], &whole[..scan / 2], b"\xFF\xD8\xFFnot really a JPEG"] {
            let error = format!("{:#}", decode_jpeg(cut).unwrap_err());
            assert!(error.contains("reading the JPEG header"), "{error}");
        }
    }

    #[test]
    fn stray_bytes_between_segments_are_decoded_through_as_pillow_does() {
        // Some cameras pad frames; libjpeg warns "extraneous bytes before marker".
        let whole = jpeg("coffee_mjpeg_no_dht");
        let eoi = whole.len() - 2;
        let mut padded = whole[..eoi].to_vec();
        padded.extend([0u8; 7]);
        padded.extend(&whole[eoi..]);
        assert_eq!(decode_jpeg(&padded).unwrap(), decode_jpeg(&whole).unwrap());
    }

    #[test]
    fn a_header_promising_too_many_pixels_is_refused_before_decoding() {
        let mut huge = jpeg("chelsea_420");
        let sof = (2..huge.len()).find(|&i| huge[i - 1] == 0xFF && huge[i] == 0xC0).expect("a baseline SOF0");
        // SOF0: length (2), precision (1), height (2), width (2).
        // 60000 x 60000 (libjpeg's limit is 65500 per side).
        huge[sof + 4..sof + 8].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        let error = format!("{:#}", decode_jpeg(&huge).unwrap_err());
        assert!(error.contains("60000x60000"), "{error}");
    }
}
