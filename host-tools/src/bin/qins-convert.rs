//! qins-convert: Hugging Face folder or GGUF file → `.qins` archive.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use qins_host::calibrate::{calibrate, CalibrationOptions};
use qins_host::convert::{convert, ConvertOptions};
use qins_host::import;
use qins_runtime::codec::Codec;

#[derive(Parser)]
#[command(version, about = "Quantize a checkpoint into a .qins archive")]
struct Args {
    /// Hugging Face checkpoint folder or .gguf file (omit with --hub or --synthetic).
    input: Option<PathBuf>,
    /// A model on the Hugging Face Hub, ORG/NAME[@REVISION]: downloads only the files the
    /// importer reads into the Hub's cache (HF_HOME, HF_HUB_CACHE), resumably; HF_TOKEN for
    /// gated models, HF_ENDPOINT for a mirror.
    #[arg(long, value_name = "ORG/NAME[@REVISION]")]
    hub: Option<String>,
    /// Output archive.
    #[arg(short, long)]
    output: PathBuf,
    /// Codec for the matrices: lut8g (the default: 8-bit learned codebook, f16 scale per
    /// --group weights), lut8 (per-row scales), lut8a (group scales and offsets), lut4 / lut4a
    /// (4-bit, group scales, plus offsets for lut4a), qins8, f16 or f32 (norms stay f32); int8
    /// and int4 are uniform baselines for comparison.
    #[arg(long, default_value = "lut8g")]
    codec: String,
    /// Codec of the embedding table and output head (default: --codec).
    #[arg(long)]
    embed_codec: Option<String>,
    /// Codec of the output head alone (of the embedding table when tied); default
    /// --embed-codec, then --codec.
    #[arg(long)]
    output_codec: Option<String>,
    /// Group size (columns per scale) of lut8g, lut8a, lut4, lut4a and int4.
    #[arg(long, default_value_t = 32)]
    group: usize,
    /// zstd level (3 is as good as 19 on quantized codes, and much faster).
    #[arg(long, default_value_t = 3)]
    zstd_level: i32,
    /// Random weights in a known model's exact shapes instead of INPUT (phi-3.5-mini).
    #[arg(long)]
    synthetic: Option<String>,
    /// With --synthetic: fewer layers than the real model.
    #[arg(long)]
    synthetic_layers: Option<usize>,
    /// With --synthetic: encode only each matrix's first N rows and repeat them down the
    /// matrix, for speed and memory runs: the real shapes and stored sizes in a fraction of the
    /// time (the weights repeat every N rows, the error figures are the samples', and the
    /// repeats compress, so the archive is smaller than a real one).
    #[arg(long, value_name = "N", requires = "synthetic")]
    repeat_rows: Option<usize>,
    /// Weight the learned codebooks' errors by the activations a text produces (its mean square
    /// per input channel, measured in f32 before quantizing): a plain-text file kept apart from
    /// the text you evaluate on (the project's is data/corpus/calib.txt).
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Windows of --calibration-ctx tokens read from the calibration text.
    #[arg(long, default_value_t = CalibrationOptions::default().windows)]
    calibration_windows: usize,
    #[arg(long, default_value_t = CalibrationOptions::default().window_len)]
    calibration_ctx: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

fn run() -> Result<()> {
    let args = Args::parse();
    let codec = Codec::from_name(&args.codec, args.group)?;
    let imported = match (&args.input, &args.hub, &args.synthetic) {
        (Some(input), None, None) => import::open(input)?,
        (None, Some(hub), None) => {
            let snapshot = import::hub::download(&hub.parse()?, !args.json)?;
            import::hf::open_named(&snapshot.dir, &snapshot.name)?
        }
        (None, None, Some(name)) => import::synthetic::open(name, args.synthetic_layers)?,
        (None, None, None) => {
            bail!("no input: give a checkpoint folder, a .gguf file, --hub ORG/NAME or --synthetic NAME")
        }
        _ => bail!("give one of INPUT, --hub and --synthetic"),
    };
    let cfg = &imported.config;
    eprintln!(
        "{}: {} layers, hidden {}, {} heads ({} kv), vocab {}",
        imported.source,
        cfg.num_layers,
        cfg.hidden_size,
        cfg.num_heads,
        cfg.num_kv_heads,
        cfg.vocab_size
    );
    let named = |name: &Option<String>| {
        name.as_deref()
            .map(|c| Codec::from_name(c, args.group))
            .transpose()
    };
    let (embed_codec, output_codec) = (named(&args.embed_codec)?, named(&args.output_codec)?);
    let calibration = match &args.calibration {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading calibration text {}", path.display()))?;
            let opts = CalibrationOptions {
                windows: args.calibration_windows,
                window_len: args.calibration_ctx,
                progress: !args.json,
            };
            Some(calibrate(&imported, &text, &opts)?)
        }
        None => None,
    };
    let opts = ConvertOptions {
        codec,
        embed_codec,
        output_codec,
        zstd_level: args.zstd_level,
        chunk_limit: None,
        progress: !args.json,
        calibration,
        repeat_rows: args.repeat_rows,
    };
    let summary = convert(imported, &opts, &args.output)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("wrote {}\n{}", args.output.display(), summary.table());
    }
    Ok(())
}

fn main() -> ExitCode {
    qins_host::main_with("qins-convert", run)
}
