// Types of qins-client.js: the worker client and OpenAI's chat API on it.

export interface LoadOptions {
  cache?: boolean;
  backend?: "auto" | "gpu" | "cpu";
  max_context?: number;
  kv_cache?: "f16" | "f32";
  compute?: "f32" | "f16";
  max_binding?: number;
  no_subgroups?: boolean;
  prefill?: "rows" | "tiled" | "tiled64";
  decode_loads?: "auto" | "u32" | "vec4";
  no_fusion?: boolean;
  decode_attention?: "auto" | "whole" | "split";
  split_attention_from?: number;
  decode_rows?: 4 | 8;
  prefill_rows?: 4 | 8;
  decode_threads?: 64 | 128 | 192 | 256;
  profile?: boolean;
  prefill_batch?: number;
}

export interface LoadProgress {
  stage: "cache" | "network" | "build";
  bytes_done: number;
  bytes_total: number;
  mb_per_s: number;
  tensors_done: number;
  tensors_total: number;
  resumes: number;
}

export interface GenerateOptions {
  temperature?: number;
  top_k?: number;
  top_p?: number;
  min_p?: number;
  repetition_penalty?: number;
  seed?: number;
  max_tokens?: number;
  ignore_eos?: boolean;
  stop?: string[];
}

export interface Token { id: number | null; text: string | null; }

export interface GenerationStats {
  prompt_tokens: number;
  cached_tokens: number;
  generated_tokens: number;
  ttft_ms: number;
  prefill_tok_s: number;
  decode_tok_s: number;
  total_ms: number;
  stop_reason: "eos" | "max_tokens" | "length" | "stop" | "aborted";
}

/** The ready info (docs/WEB_API.md); the main fields. */
export interface EngineInfo {
  architecture: string;
  params: number;
  codec: string;
  archive_bytes: number;
  backend: "gpu" | "cpu";
  context: number;
  precision: "f32" | "f16";
  kv_cache: "f32" | "f16";
  gpu_bytes: number;
  load_ms: number;
  from_cache: boolean;
  generation: { temperature?: number; top_p?: number; top_k?: number; repetition_penalty?: number };
  [key: string]: unknown;
}

export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant";
  content: string | { type: "text"; text: string }[];
}

interface RequestBase {
  model?: string;
  temperature?: number;
  top_p?: number;
  /** Not OpenAI's; llama.cpp's and WebLLM's. */
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
  max_tokens?: number;
  max_completion_tokens?: number;
  seed?: number;
  stop?: string | string[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  /** Only 1. */
  n?: 1;
  /** Refused when not 0. */
  frequency_penalty?: number;
  presence_penalty?: number;
}

export interface ChatCompletionRequest extends RequestBase { messages: ChatMessage[]; }
export interface CompletionRequest extends RequestBase { prompt: string; }

export type FinishReason = "stop" | "length" | "abort";
export interface Usage { prompt_tokens: number; completion_tokens: number; total_tokens: number; }

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: { index: 0; message: { role: "assistant"; content: string }; logprobs: null; finish_reason: FinishReason }[];
  usage: Usage;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  /** Empty in the usage chunk. */
  choices: { index: 0; delta: { role?: "assistant"; content?: string }; logprobs: null; finish_reason: FinishReason | null }[];
  usage?: Usage;
}

export interface Completion {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  choices: { index: 0; text: string; logprobs: null; finish_reason: FinishReason | null }[];
  usage?: Usage;
}

export class QinsClient {
  constructor(workerUrl?: URL | string);
  info: EngineInfo | null;
  load(url: string, options?: LoadOptions, onProgress?: (p: LoadProgress) => void): Promise<EngineInfo>;
  reload(url: string, options?: LoadOptions & { initProgressCallback?: (p: LoadProgress) => void }): Promise<EngineInfo>;
  generate(messages: ChatMessage[], options?: GenerateOptions, onToken?: (t: Token) => void): Promise<GenerationStats>;
  complete(ids: number[], options?: GenerateOptions, onToken?: (t: Token) => void): Promise<GenerationStats>;
  unload(): Promise<void>;
  cachedArchives(): Promise<{ url: string; bytes: number | null }[]>;
  hasModelInCache(url: string): Promise<boolean>;
  deleteCachedArchive(url: string): Promise<boolean>;
  abort(): void;
  interruptGenerate(): void;
  terminate(): void;
  chat: {
    completions: {
      create(request: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
    };
  };
  completions: {
    create(request: CompletionRequest & { stream: true }): Promise<AsyncIterable<Completion>>;
    create(request: CompletionRequest & { stream?: false }): Promise<Completion>;
  };
}

export function CreateQinsEngine(
  url: string,
  options?: LoadOptions & { initProgressCallback?: (p: LoadProgress) => void; workerUrl?: URL | string },
): Promise<QinsClient>;
