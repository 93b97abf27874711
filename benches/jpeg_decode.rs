//! MJPEG frame decoding: maskd's decoder (libjpeg-turbo, `maskd::picture`)
//! beside the one it replaced (zune-jpeg 0.5, which `image` 0.25 ran), on
//! 4:2:2 camera-style frames of 640x480, 1280x720 and 1920x1080. Guards the
//! camera's per-frame cost: decoding must stay a small part of a frame.
//!
//! ```sh
//! cargo bench --bench jpeg_decode                 # both decoders, 50 runs per size
//! cargo bench --bench jpeg_decode -- --runs 200 --size 1280x720 --only new
//! ```
//!
//! The frames are the sample photo coffee.png tiled to each size and encoded
//! by libjpeg-turbo (quality 85, 4:2:2, as a UVC camera sends). The two
//! decoders alternate within each run, so both see the same machine load;
//! the figures are medians. `--runs 0` only builds the frames: under
//! emulation, count instructions of a run with and without `--runs N` and
//! divide the difference by N (docs/PERFORMANCE.md).

use std::path::Path;
use std::time::Instant;

use image::RgbImage;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

const SIZES: [(u32, u32); 3] = [(640, 480), (1280, 720), (1920, 1080)];
const QUALITY: i32 = 85;

#[derive(Clone, Copy, PartialEq)]
enum Decoder {
    /// zune-jpeg with the options `image` 0.25 gave it.
    Old,
    /// `maskd::picture::decode_jpeg`.
    New,
}

impl Decoder {
    fn name(self) -> &'static str {
        match self {
            Decoder::Old => "old (zune-jpeg 0.5)",
            Decoder::New => "new (libjpeg-turbo)",
        }
    }

    fn decode(self, jpeg: &[u8]) -> Vec<u8> {
        match self {
            Decoder::Old => {
                let options = DecoderOptions::default()
                    .set_strict_mode(false)
                    .set_max_width(usize::MAX)
                    .set_max_height(usize::MAX)
                    .jpeg_set_out_colorspace(ColorSpace::RGB);
                zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(jpeg), options).decode().expect("zune-jpeg decodes")
            }
            Decoder::New => maskd::picture::decode_jpeg(jpeg).expect("libjpeg-turbo decodes").into_raw(),
        }
    }
}

struct Options {
    runs: usize,
    sizes: Vec<(u32, u32)>,
    decoders: Vec<Decoder>,
}

fn options() -> Options {
    let mut options = Options { runs: 50, sizes: SIZES.to_vec(), decoders: vec![Decoder::Old, Decoder::New] };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => options.runs = args.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            "--size" => {
                let size = args.next().expect("--size WxH");
                let (w, h) = size.split_once('x').expect("--size WxH");
                options.sizes = vec![(w.parse().expect("width"), h.parse().expect("height"))];
            }
            "--only" => {
                options.decoders = match args.next().as_deref() {
                    Some("old") => vec![Decoder::Old],
                    Some("new") => vec![Decoder::New],
                    other => panic!("--only old|new, got {other:?}"),
                }
            }
            "--bench" => {} // cargo bench passes it to every bench binary
            other => panic!("unknown argument {other:?} (--runs N, --size WxH, --only old|new)"),
        }
    }
    options
}

/// A camera-style frame: the photo tiled to `width` x `height`, so that the
/// frame has a photo's detail at every size, encoded 4:2:2.
fn frame(photo: &RgbImage, width: u32, height: u32) -> Vec<u8> {
    let tiled = RgbImage::from_fn(width, height, |x, y| *photo.get_pixel(x % photo.width(), y % photo.height()));
    let image = turbojpeg::Image {
        pixels: tiled.as_raw().as_slice(),
        width: width as usize,
        pitch: 3 * width as usize,
        height: height as usize,
        format: turbojpeg::PixelFormat::RGB,
    };
    turbojpeg::compress(image, QUALITY, turbojpeg::Subsamp::Sub2x1).expect("libjpeg-turbo encodes").to_vec()
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let options = options();
    let photo = maskd::picture::read_rgb(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/images/coffee.png"))
        .expect("the sample photo");
    for &(width, height) in &options.sizes {
        let jpeg = frame(&photo, width, height);
        println!("{width}x{height} 4:2:2 frame, {} KB, {} runs", jpeg.len() / 1024, options.runs);
        if options.runs == 0 {
            continue;
        }
        let mut times = vec![Vec::with_capacity(options.runs); options.decoders.len()];
        for _ in 0..options.runs {
            for (decoder, times) in options.decoders.iter().zip(&mut times) {
                let started = Instant::now();
                let pixels = std::hint::black_box(decoder.decode(std::hint::black_box(&jpeg)));
                times.push(started.elapsed().as_secs_f64() * 1e3);
                assert_eq!(pixels.len(), 3 * (width * height) as usize);
            }
        }
        let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
        for ((decoder, times), median) in options.decoders.iter().zip(&times).zip(&medians) {
            println!(
                "  {:<22} median {median:7.2} ms   min {:7.2}   max {:7.2}",
                decoder.name(),
                times[0],
                times[times.len() - 1]
            );
        }
        if let [old, new] = medians[..] {
            println!("  new / old              {:.2}x the time", new / old);
        }
    }
}
