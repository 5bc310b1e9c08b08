use wgpu::util::DeviceExt;

use crate::{QinsError, Result};

#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Pick the first adapter whose name contains this (case-insensitive); else the
    /// high-performance one.
    pub adapter: Option<String>,
}

/// Device, queue and what the adapter can do.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
}

fn gpu_err(what: &str, e: impl std::fmt::Display) -> QinsError {
    QinsError::Gpu(format!("{what}: {e}"))
}

impl GpuContext {
    pub async fn new(opts: &GpuOptions) -> Result<Self> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if std::env::var_os("WGPU_BACKEND").is_none() {
            // Vulkan, Metal, DX12 or WebGPU: the GL fallback lacks what the kernels need.
            desc.backends = wgpu::Backends::PRIMARY;
        }
        let instance = wgpu::Instance::new(desc);
        let adapter = match &opts.adapter {
            Some(name) => {
                let want = name.to_lowercase();
                let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&want))
                    .ok_or_else(|| {
                        QinsError::Gpu(format!(
                            "no GPU adapter matches \"{name}\" (found: {})",
                            names.join(", ")
                        ))
                    })?
            }
            None => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    ..Default::default()
                })
                .await
                .map_err(|e| gpu_err("no GPU adapter (WebGPU/Vulkan/Metal unavailable?)", e))?,
        };
        let info = adapter.get_info();
        // The adapter's real limits: WebGPU's defaults (128 MiB bindings) are too small for
        // large tensors.
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("qins"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| gpu_err("cannot open the GPU device", e))?;
        device.set_device_lost_callback(|reason, msg| {
            tracing::error!(?reason, %msg, "GPU device lost");
        });
        Ok(Self {
            device,
            queue,
            info,
            limits,
        })
    }

    /// One line naming the adapter, its backend and the precision path.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, f32 path)",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    pub fn storage(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// A zeroed f32 work buffer of `n` values.
    pub fn scratch(&self, label: &str, n: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (n.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A uniform buffer of u32 words (floats as their bits), padded to 16 bytes.
    pub fn uniform(&self, label: &str, words: &[u32]) -> wgpu::Buffer {
        let mut w = words.to_vec();
        w.resize(words.len().div_ceil(4).max(1) * 4, 0);
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(&w),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// Copies `len` bytes of `src` back to the host and waits for them (native targets).
    pub fn read_back(&self, src: &wgpu::Buffer, offset: u64, len: u64) -> Result<Vec<u8>> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: len,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, offset, &staging, 0, len);
        self.queue.submit([enc.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| gpu_err("GPU wait failed", e))?;
        rx.recv()
            .map_err(|e| gpu_err("readback", e))?
            .map_err(|e| gpu_err("readback map", e))?;
        let bytes = slice
            .get_mapped_range()
            .map_err(|e| gpu_err("readback range", e))?
            .to_vec();
        staging.unmap();
        Ok(bytes)
    }

    pub fn read_f32(&self, src: &wgpu::Buffer, offset_values: usize, n: usize) -> Result<Vec<f32>> {
        let bytes = self.read_back(src, (offset_values * 4) as u64, (n * 4) as u64)?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }
}
