//! A Linux framebuffer (/dev/fbN) as a [`Screen`]: pictures are packed into the
//! device's pixel layout (RGB565 or XRGB8888 and their BGR twins) and written
//! through a memory map, row by row at the device's stride.

use std::io;
use std::ops::DerefMut;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use image::RgbImage;
use serde::Deserialize;

use super::Screen;
use crate::model::Size;

/// The `[display]` settings of a framebuffer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FramebufferSettings {
    pub device: PathBuf,
}

impl Default for FramebufferSettings {
    fn default() -> FramebufferSettings {
        FramebufferSettings {
            device: PathBuf::from("/dev/fb0"),
        }
    }
}

/// Where one colour sits in a pixel, in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    pub offset: u32,
    pub length: u32,
}

/// How the device stores a pixel: its size and where red, green and blue sit
/// in it, read as a native-endian integer (what fbdev drivers expose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelLayout {
    pub bits_per_pixel: u32,
    pub red: Channel,
    pub green: Channel,
    pub blue: Channel,
}

impl PixelLayout {
    pub const RGB565: PixelLayout = PixelLayout {
        bits_per_pixel: 16,
        red: Channel {
            offset: 11,
            length: 5,
        },
        green: Channel {
            offset: 5,
            length: 6,
        },
        blue: Channel {
            offset: 0,
            length: 5,
        },
    };
    pub const XRGB8888: PixelLayout = PixelLayout {
        bits_per_pixel: 32,
        red: Channel {
            offset: 16,
            length: 8,
        },
        green: Channel {
            offset: 8,
            length: 8,
        },
        blue: Channel {
            offset: 0,
            length: 8,
        },
    };

    /// Accepts 16-bit 5-6-5 and 32-bit 8-8-8 layouts, channels in any order.
    ///
    /// # Errors
    /// Any other layout, named.
    pub fn check(self) -> Result<PixelLayout> {
        let lengths = [self.red.length, self.green.length, self.blue.length];
        let supported = match self.bits_per_pixel {
            16 => lengths == [5, 6, 5],
            32 => lengths == [8, 8, 8],
            _ => false,
        };
        let channels = [self.red, self.green, self.blue];
        let fits = channels
            .iter()
            .all(|c| c.offset + c.length <= self.bits_per_pixel);
        let mask = |c: &Channel| ((1u64 << c.length) - 1) << c.offset;
        let apart = channels.iter().map(mask).fold(Some(0u64), |seen, m| {
            seen.filter(|s| s & m == 0).map(|s| s | m)
        });
        if !(supported && fits && apart.is_some()) {
            bail!(
                "unsupported framebuffer pixel layout: {} bits per pixel, red {}+{}, green {}+{}, blue {}+{} \
                 (offset+length in bits); supported are RGB565 and XRGB8888 (fbset -depth 16 or 32)",
                self.bits_per_pixel,
                self.red.offset,
                self.red.length,
                self.green.offset,
                self.green.length,
                self.blue.offset,
                self.blue.length
            );
        }
        Ok(self)
    }

    pub fn bytes_per_pixel(self) -> usize {
        self.bits_per_pixel as usize / 8
    }

    fn pixel(self, [r, g, b]: [u8; 3]) -> u32 {
        let place = |value: u8, c: Channel| (u32::from(value) >> (8 - c.length)) << c.offset;
        place(r, self.red) | place(g, self.green) | place(b, self.blue)
    }
}

/// Packs `picture` into `out` in `layout`, one row every `stride` bytes,
/// leaving the bytes between rows alone.
///
/// # Errors
/// `stride` is shorter than a row, or `out` shorter than the picture.
pub fn pack(picture: &RgbImage, layout: PixelLayout, stride: usize, out: &mut [u8]) -> Result<()> {
    let bytes = layout.bytes_per_pixel();
    let row = picture.width() as usize * bytes;
    let rows = picture.height() as usize;
    ensure!(
        stride >= row,
        "stride {stride} is shorter than a row of {row} bytes"
    );
    let needed = if rows == 0 {
        0
    } else {
        (rows - 1) * stride + row
    };
    ensure!(
        out.len() >= needed,
        "{} bytes cannot hold {needed}",
        out.len()
    );
    for (source, target) in picture.rows().zip(out.chunks_mut(stride)) {
        for (pixel, target) in source.zip(target[..row].chunks_exact_mut(bytes)) {
            let value = layout.pixel(pixel.0);
            match bytes {
                2 => target.copy_from_slice(&(value as u16).to_ne_bytes()),
                _ => target.copy_from_slice(&value.to_ne_bytes()),
            }
        }
    }
    Ok(())
}

/// A framebuffer device, mapped.
pub struct Framebuffer {
    path: PathBuf,
    size: Size,
    layout: PixelLayout,
    stride: usize,
    /// Where the visible top-left pixel starts in the map (panning offsets).
    start: usize,
    map: Box<dyn DerefMut<Target = [u8]> + Send>,
}

impl Framebuffer {
    /// Opens and maps `settings.device`.
    ///
    /// # Errors
    /// The device is missing, not accessible, not a framebuffer, or has an unsupported layout.
    pub fn open(settings: &FramebufferSettings) -> Result<Framebuffer> {
        let path = &settings.device;
        let device = linuxfb::Framebuffer::new(path).map_err(|e| explain_open(path, e))?;
        let layout = layout_of(&device)
            .and_then(PixelLayout::check)
            .with_context(|| format!("framebuffer {}", path.display()))?;
        let (width, height) = device.get_size();
        let (x_offset, y_offset) = device.get_offset();
        let stride = stride_of(path, width as usize * layout.bytes_per_pixel())?;
        let map = device
            .map()
            .map_err(|e| anyhow::anyhow!("mapping framebuffer {}: {e:?}", path.display()))?;
        let start = y_offset as usize * stride + x_offset as usize * layout.bytes_per_pixel();
        let end = start
            + (height as usize).saturating_sub(1) * stride
            + width as usize * layout.bytes_per_pixel();
        ensure!(
            end <= map.len(),
            "framebuffer {}: its {width}x{height} screen at stride {stride} needs {end} bytes, the map has {}",
            path.display(),
            map.len()
        );
        log::info!(
            "framebuffer {}: {width}x{height}, {} bits per pixel, stride {stride}",
            path.display(),
            layout.bits_per_pixel
        );
        Ok(Framebuffer {
            path: path.clone(),
            size: Size::new(width, height),
            layout,
            stride,
            start,
            map: Box::new(map),
        })
    }
}

impl Screen for Framebuffer {
    fn size(&self) -> Size {
        self.size
    }

    fn show(&mut self, picture: &RgbImage) -> Result<()> {
        ensure!(
            picture.dimensions() == (self.size.width, self.size.height),
            "a {}x{} picture for the {}x{} framebuffer {}",
            picture.width(),
            picture.height(),
            self.size.width,
            self.size.height,
            self.path.display()
        );
        pack(
            picture,
            self.layout,
            self.stride,
            &mut self.map[self.start..],
        )
    }
}

fn layout_of(device: &linuxfb::Framebuffer) -> Result<PixelLayout> {
    let layout = device.get_pixel_layout();
    if [&layout.red, &layout.green, &layout.blue]
        .iter()
        .any(|c| c.msb_right)
    {
        bail!("unsupported framebuffer pixel layout: bit-reversed (msb_right) channels");
    }
    let channel = |c: linuxfb::PixelLayoutChannel| Channel {
        offset: c.offset,
        length: c.length,
    };
    Ok(PixelLayout {
        bits_per_pixel: device.get_bytes_per_pixel() * 8,
        red: channel(layout.red),
        green: channel(layout.green),
        blue: channel(layout.blue),
    })
}

/// The bytes from one row to the next (the fixed screeninfo's line length,
/// which linuxfb does not expose, read from sysfs).
fn stride_of(path: &Path, row: usize) -> Result<usize> {
    let real = path
        .canonicalize()
        .with_context(|| format!("resolving {}", path.display()))?;
    let name = real
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let sysfs = Path::new("/sys/class/graphics").join(name).join("stride");
    match std::fs::read_to_string(&sysfs) {
        Ok(text) => {
            let stride = text
                .trim()
                .parse()
                .with_context(|| format!("reading {}: {text:?}", sysfs.display()))?;
            ensure!(
                stride >= row,
                "{} says {stride}, less than a row of {row} bytes",
                sysfs.display()
            );
            Ok(stride)
        }
        Err(error) => {
            log::warn!(
                "{}: {error}; assuming rows of {row} bytes without padding",
                sysfs.display()
            );
            Ok(row)
        }
    }
}

fn explain_open(path: &Path, error: linuxfb::Error) -> anyhow::Error {
    let shown = path.display();
    match (&error.io, &error.fb) {
        (Some(io), _) if io.kind() == io::ErrorKind::NotFound => anyhow::anyhow!(
            "framebuffer {shown} does not exist: check display.device and that the display driver is loaded (ls /dev/fb*)"
        ),
        (Some(io), _) if io.kind() == io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "no permission to open framebuffer {shown}: the daemon's user needs the group that owns it, usually `video` (usermod -aG video USER)"
        ),
        (Some(io), _) => anyhow::anyhow!("cannot open framebuffer {shown}: {io}"),
        (None, Some(fb)) => anyhow::anyhow!(
            "{shown} is not a framebuffer device (its screen info ioctl failed: {})",
            fb.message
        ),
        (None, None) => anyhow::anyhow!("cannot open framebuffer {shown}"),
    }
}

#[cfg(test)]
mod tests {
    use image::Rgb;

    use super::*;

    /// White, pure red, green, blue, and a grey that loses its low bits.
    fn colours() -> RgbImage {
        let mut picture = RgbImage::new(5, 1);
        let pixels = [
            [255, 255, 255],
            [255, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [0x84, 0x86, 0x88],
        ];
        for (x, pixel) in pixels.into_iter().enumerate() {
            picture.put_pixel(x as u32, 0, Rgb(pixel));
        }
        picture
    }

    fn packed(layout: PixelLayout, words: &[u32]) -> Vec<u8> {
        words
            .iter()
            .flat_map(|&w| match layout.bytes_per_pixel() {
                2 => (w as u16).to_ne_bytes().to_vec(),
                _ => w.to_ne_bytes().to_vec(),
            })
            .collect()
    }

    #[test]
    fn rgb565_packs_five_six_five_bits() {
        let mut out = vec![0; 10];
        pack(&colours(), PixelLayout::RGB565, 10, &mut out).expect("fits");
        // 0x84 -> 10000, 0x86 -> 100001, 0x88 -> 10001.
        let grey = (0b10000 << 11) | (0b100001 << 5) | 0b10001;
        assert_eq!(
            out,
            packed(PixelLayout::RGB565, &[0xFFFF, 0xF800, 0x07E0, 0x001F, grey])
        );
        if cfg!(target_endian = "little") {
            assert_eq!(out[2..4], [0x00, 0xF8]);
        }
    }

    #[test]
    fn xrgb8888_packs_bytes_and_leaves_x_zero() {
        let mut out = vec![0; 20];
        pack(&colours(), PixelLayout::XRGB8888, 20, &mut out).expect("fits");
        let words = [
            0x00FF_FFFF,
            0x00FF_0000,
            0x0000_FF00,
            0x0000_00FF,
            0x0084_8688,
        ];
        assert_eq!(out, packed(PixelLayout::XRGB8888, &words));
        if cfg!(target_endian = "little") {
            assert_eq!(out[16..], [0x88, 0x86, 0x84, 0x00]);
        }
    }

    #[test]
    fn bgr_layouts_swap_red_and_blue() {
        let xbgr = PixelLayout {
            red: Channel {
                offset: 0,
                length: 8,
            },
            blue: Channel {
                offset: 16,
                length: 8,
            },
            ..PixelLayout::XRGB8888
        }
        .check()
        .expect("supported");
        let mut out = vec![0; 20];
        pack(&colours(), xbgr, 20, &mut out).expect("fits");
        assert_eq!(out[4..8], 0x0000_00FFu32.to_ne_bytes());
    }

    #[test]
    fn rows_land_at_the_stride_and_padding_is_untouched() {
        let mut picture = RgbImage::new(2, 2);
        picture.put_pixel(0, 1, Rgb([255, 255, 255]));
        let mut out = vec![0xAA; 6 + 4];
        pack(&picture, PixelLayout::RGB565, 6, &mut out).expect("fits");
        assert_eq!(out, [0, 0, 0, 0, 0xAA, 0xAA, 0xFF, 0xFF, 0, 0]);
        let error = pack(&picture, PixelLayout::RGB565, 6, &mut [0; 9]).expect_err("short");
        assert!(error.to_string().contains("9 bytes"), "{error}");
        assert!(pack(&picture, PixelLayout::RGB565, 3, &mut out).is_err());
    }

    #[test]
    fn other_layouts_are_refused_by_name() {
        let rgb24 = PixelLayout {
            bits_per_pixel: 24,
            ..PixelLayout::XRGB8888
        };
        let error = rgb24.check().expect_err("24 bpp").to_string();
        assert!(
            error.contains("24 bits per pixel") && error.contains("RGB565"),
            "{error}"
        );
        let overlapping = PixelLayout {
            green: Channel {
                offset: 10,
                length: 6,
            },
            ..PixelLayout::RGB565
        };
        assert!(overlapping.check().is_err());
        PixelLayout::RGB565.check().expect("supported");
        PixelLayout::XRGB8888.check().expect("supported");
    }

    #[test]
    fn opening_a_missing_framebuffer_names_it_and_what_to_check() {
        let settings = FramebufferSettings {
            device: "/dev/fb-maskd-absent".into(),
        };
        let error = Framebuffer::open(&settings)
            .err()
            .expect("no such device")
            .to_string();
        assert!(
            error.contains("/dev/fb-maskd-absent does not exist"),
            "{error}"
        );
        assert!(error.contains("display.device"), "{error}");
    }

    #[test]
    fn a_file_that_is_not_a_framebuffer_is_refused() {
        let settings = FramebufferSettings {
            device: "/dev/null".into(),
        };
        let error = Framebuffer::open(&settings)
            .err()
            .expect("not a framebuffer")
            .to_string();
        assert!(
            error.contains("/dev/null is not a framebuffer device"),
            "{error}"
        );
    }

    #[test]
    fn settings_default_to_fb0_and_reject_unknown_keys() {
        let settings: FramebufferSettings = toml::from_str("").expect("parses");
        assert_eq!(settings.device, PathBuf::from("/dev/fb0"));
        assert!(toml::from_str::<FramebufferSettings>("path = \"/dev/fb1\"").is_err());
    }
}
