// The query API, called same-origin with the project's secret key.

const KEY_STORAGE = "omnitrail.key";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function getKey(): string | null {
  return localStorage.getItem(KEY_STORAGE);
}

export function setKey(key: string): void {
  localStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey(): void {
  localStorage.removeItem(KEY_STORAGE);
}

/** Reads a key given as `#key=ots_…` in the address, keeps it, and removes it from the
 * address bar (and history) so it is not bookmarked or shared by accident. */
export function takeKeyFromFragment(): void {
  const m = /^#key=([^&]+)/.exec(location.hash);
  if (!m || !m[1]) return;
  setKey(decodeURIComponent(m[1]));
  history.replaceState(history.state, "", location.pathname + location.search);
}

export type Query = Record<string, string | number | boolean | string[] | null | undefined>;

export function toSearch(params: Query): string {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => q.append(name, v));
    else q.set(name, String(value));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

/** Listeners told when the server refuses the key (401), so the app asks for another. */
const unauthorized: (() => void)[] = [];
export function onUnauthorized(f: () => void): void {
  unauthorized.push(f);
}

export async function request<T>(
  method: string,
  path: string,
  // `rawBody` is sent as typed, so the server's parser (and its line numbers) judge the text.
  options: { query?: Query; body?: unknown; rawBody?: string; signal?: AbortSignal; key?: string } = {},
): Promise<T> {
  const key = options.key ?? getKey();
  const headers: Record<string, string> = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  const payload = options.rawBody ?? (options.body === undefined ? null : JSON.stringify(options.body));
  if (payload !== null) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path + toSearch(options.query ?? {}), {
      method,
      headers,
      body: payload,
      signal: options.signal ?? null,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    throw new ApiError(0, "network", `the server at ${location.host} cannot be reached`);
  }
  const text = await response.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const err = body as { code?: string; message?: string } | null;
    const error = new ApiError(
      response.status,
      err?.code ?? "http",
      err?.message ?? `${method} ${path} failed with status ${response.status}`,
    );
    if (response.status === 401 && options.key === undefined) unauthorized.forEach((f) => f());
    throw error;
  }
  return body as T;
}

export function get<T>(path: string, query?: Query, signal?: AbortSignal): Promise<T> {
  return request<T>("GET", path, { query: query ?? {}, signal: signal ?? undefined });
}

export function analysis<T>(name: string, query: Query, signal?: AbortSignal): Promise<T> {
  return get<T>(`/api/v1/analyses/${name}`, query, signal);
}
