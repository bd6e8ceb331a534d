//! Reader for the IDX format of the MNIST files (`*-idx3-ubyte` images, `*-idx1-ubyte` labels),
//! raw or gzip-compressed.
//!
//! Layout: two zero bytes, a type code (`0x08` = unsigned byte), the number of dimensions, then
//! one big-endian `u32` per dimension, then the data, row-major. Every check below names the file
//! and what was wrong; nothing here panics on a bad file, and no buffer is sized from the header
//! alone (a header may claim billions of items in a tiny file).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

/// Type code of unsigned bytes, the only element type MNIST uses.
const UNSIGNED_BYTE: u8 = 0x08;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Why an IDX file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    /// The file could not be opened or read (including a corrupt gzip stream).
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is shorter than its 4-byte magic number or its dimension sizes.
    #[error("{path}: truncated header: {found} bytes, expected at least {expected}")]
    TruncatedHeader {
        /// The file.
        path: PathBuf,
        /// Bytes the header needs.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The magic number is not `00 00 08 NN`.
    #[error(
        "{path}: bad magic number {found:02x?}: expected 00 00 08 0{expected_dims} \
         (an IDX file of unsigned bytes with {expected_dims} dimensions)"
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The four bytes found.
        found: [u8; 4],
        /// Dimensions the caller expected.
        expected_dims: u8,
    },
    /// The file has another number of dimensions than expected (3 for images, 1 for labels).
    #[error("{path}: {found} dimensions, expected {expected}")]
    WrongRank {
        /// The file.
        path: PathBuf,
        /// Dimensions expected.
        expected: usize,
        /// Dimensions in the header.
        found: usize,
    },
    /// An image size other than the expected rows x columns.
    #[error("{path}: images are {rows}x{cols}, expected {expected_rows}x{expected_cols}")]
    WrongImageSize {
        /// The file.
        path: PathBuf,
        /// Rows in the header.
        rows: usize,
        /// Columns in the header.
        cols: usize,
        /// Rows expected.
        expected_rows: usize,
        /// Columns expected.
        expected_cols: usize,
    },
    /// Fewer data bytes than the dimensions declare.
    #[error("{path}: truncated data: the header declares {expected} data bytes, found {found}")]
    TruncatedData {
        /// The file.
        path: PathBuf,
        /// Bytes declared by the header.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// More data bytes than the dimensions declare.
    #[error("{path}: {extra} unexpected bytes after the {expected} data bytes the header declares")]
    TrailingData {
        /// The file.
        path: PathBuf,
        /// Bytes declared by the header.
        expected: u64,
        /// Bytes beyond them (at least).
        extra: u64,
    },
    /// A label outside `0..num_classes`.
    #[error("{path}: label {value} at index {index} is out of range 0..{num_classes}")]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// Position of the label.
        index: usize,
        /// The label.
        value: u8,
        /// Number of classes.
        num_classes: usize,
    },
    /// The image and label files hold different numbers of items.
    #[error("{images} holds {image_count} images but {labels} holds {label_count} labels")]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// Images it holds.
        image_count: usize,
        /// The label file.
        labels: PathBuf,
        /// Labels it holds.
        label_count: usize,
    },
}

/// Greyscale images of one size, stored contiguously row-major, one byte per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count * rows * cols` pixels.
    pub pixels: Vec<u8>,
}

/// Reads an `idx3-ubyte` file of `rows` x `cols` images.
pub fn read_images(path: &Path, rows: usize, cols: usize) -> Result<IdxImages, IdxError> {
    let (dims, pixels) = read_idx(path, 3)?;
    if dims[1] != rows || dims[2] != cols {
        return Err(IdxError::WrongImageSize {
            path: path.to_path_buf(),
            rows: dims[1],
            cols: dims[2],
            expected_rows: rows,
            expected_cols: cols,
        });
    }
    Ok(IdxImages {
        count: dims[0],
        rows,
        cols,
        pixels,
    })
}

/// Reads an `idx1-ubyte` label file and checks every label is below `num_classes`.
pub fn read_labels(path: &Path, num_classes: usize) -> Result<Vec<u8>, IdxError> {
    let (_, labels) = read_idx(path, 1)?;
    if let Some((index, &value)) = labels
        .iter()
        .enumerate()
        .find(|(_, label)| usize::from(**label) >= num_classes)
    {
        return Err(IdxError::LabelOutOfRange {
            path: path.to_path_buf(),
            index,
            value,
            num_classes,
        });
    }
    Ok(labels)
}

/// Reads an image file and its label file and checks they hold as many items.
pub fn read_pair(
    images_path: &Path,
    labels_path: &Path,
    rows: usize,
    cols: usize,
    num_classes: usize,
) -> Result<(IdxImages, Vec<u8>), IdxError> {
    let images = read_images(images_path, rows, cols)?;
    let labels = read_labels(labels_path, num_classes)?;
    if images.count != labels.len() {
        return Err(IdxError::CountMismatch {
            images: images_path.to_path_buf(),
            image_count: images.count,
            labels: labels_path.to_path_buf(),
            label_count: labels.len(),
        });
    }
    Ok((images, labels))
}

/// Reads an IDX file of unsigned bytes with `rank` dimensions; returns its dimensions and data.
///
/// Gzip is recognised by its magic bytes, not the file name, so a renamed file still reads.
pub fn read_idx(path: &Path, rank: u8) -> Result<(Vec<usize>, Vec<u8>), IdxError> {
    let mut reader = open_content(path)?;
    parse(path, &mut reader, rank)
}

/// Opens `path` for reading its content: decompressed when it starts with the gzip magic bytes,
/// as is otherwise.
pub fn open_content(path: &Path) -> Result<Box<dyn Read>, IdxError> {
    let io_error = |source| IdxError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = BufReader::new(File::open(path).map_err(io_error)?);
    content_reader(file).map_err(io_error)
}

/// Wraps `reader` so that it yields the content: decompressed when it starts with the gzip
/// magic bytes, as is otherwise.
pub fn content_reader(mut reader: impl Read + 'static) -> std::io::Result<Box<dyn Read>> {
    let mut first = [0u8; 2];
    let sniffed = read_up_to(&mut reader, &mut first)?;
    let prefix = std::io::Cursor::new(first[..sniffed].to_vec());
    Ok(if is_gzip(&first[..sniffed]) {
        Box::new(GzDecoder::new(prefix.chain(reader)))
    } else {
        Box::new(prefix.chain(reader))
    })
}

/// Whether `bytes` begin with the gzip magic number.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Parses IDX content from `reader`; `path` only names the source in errors.
pub fn parse(
    path: &Path,
    reader: &mut dyn Read,
    rank: u8,
) -> Result<(Vec<usize>, Vec<u8>), IdxError> {
    let io_error = |source| IdxError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut magic = [0u8; 4];
    let found = read_up_to(reader, &mut magic).map_err(io_error)?;
    if found < 4 {
        return Err(IdxError::TruncatedHeader {
            path: path.to_path_buf(),
            expected: 4,
            found,
        });
    }
    if magic[0] != 0 || magic[1] != 0 || magic[2] != UNSIGNED_BYTE {
        return Err(IdxError::BadMagic {
            path: path.to_path_buf(),
            found: magic,
            expected_dims: rank,
        });
    }
    if magic[3] != rank {
        return Err(IdxError::WrongRank {
            path: path.to_path_buf(),
            expected: usize::from(rank),
            found: usize::from(magic[3]),
        });
    }

    let header_len = 4 + 4 * usize::from(rank);
    let mut dims_bytes = vec![0u8; 4 * usize::from(rank)];
    let found = read_up_to(reader, &mut dims_bytes).map_err(io_error)?;
    if found < dims_bytes.len() {
        return Err(IdxError::TruncatedHeader {
            path: path.to_path_buf(),
            expected: header_len,
            found: 4 + found,
        });
    }
    let dims: Vec<usize> = dims_bytes
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    // Checked: a product that overflows u64 is certainly more than any file holds.
    let declared = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .unwrap_or(u64::MAX);

    // Read at most one byte beyond what is declared, letting the buffer grow with what the
    // file really holds rather than reserving what the header claims.
    let mut data = Vec::new();
    reader
        .take(declared.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(io_error)?;
    let found = data.len() as u64;
    if found < declared {
        return Err(IdxError::TruncatedData {
            path: path.to_path_buf(),
            expected: declared,
            found,
        });
    }
    if found > declared {
        let rest = std::io::copy(reader, &mut std::io::sink()).map_err(io_error)?;
        return Err(IdxError::TrailingData {
            path: path.to_path_buf(),
            expected: declared,
            extra: found - declared + rest,
        });
    }
    Ok((dims, data))
}

/// Reads `bytes`, raw or gzipped, as an IDX label file and as an image file, the way a file
/// from disk is read, and drops the outcome.
///
/// The one body of the `idx` fuzz target and of the test that replays its corpus: it must
/// return for any input, without panicking, and allocate no more than the decompressed input.
pub fn check_untrusted(bytes: &[u8]) {
    for rank in [1u8, 3] {
        if let Ok(mut reader) = content_reader(std::io::Cursor::new(bytes.to_vec())) {
            let _ = parse(Path::new("untrusted input"), &mut reader, rank);
        }
    }
}

/// Fills `buf` as far as the reader allows; returns how many bytes were read.
fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Writes an IDX file of unsigned bytes with dimensions `dims`, gzip-compressed when `gzip`.
///
/// Used to make small data sets for tests and demos; MNIST itself is only ever read.
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8], gzip: bool) -> std::io::Result<()> {
    use std::io::Write;

    let invalid = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
    let rank = u8::try_from(dims.len()).map_err(|_| invalid("too many dimensions".into()))?;
    let declared: usize = dims.iter().product();
    if declared != data.len() {
        return Err(invalid(format!(
            "dimensions {dims:?} declare {declared} bytes but {} were given",
            data.len()
        )));
    }
    let mut bytes = vec![0, 0, UNSIGNED_BYTE, rank];
    for &dim in dims {
        let dim = u32::try_from(dim).map_err(|_| invalid(format!("dimension {dim} too large")))?;
        bytes.extend_from_slice(&dim.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    let file = File::create(path)?;
    if gzip {
        let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        encoder.write_all(&bytes)?;
        encoder.finish()?.sync_all()
    } else {
        let mut file = file;
        file.write_all(&bytes)?;
        file.sync_all()
    }
}
