import { get, type Query } from "./api";
import { makeChart, type Option } from "./charts";
import { h } from "./dom";

/** Filters every page shares, kept in the URL's query string. */
export const GLOBAL_FILTERS = ["from", "to", "segment", "persona"] as const;

export interface Ctx {
  main: HTMLElement;
  /** The path after the app's root, e.g. `/customers/c42`. */
  path: string;
  params: URLSearchParams;
  /** The global filters as API parameters. */
  filters: Query;
  signal: AbortSignal;
  /** Changes the page's query parameters (keeping the rest) and renders again. */
  setParams(update: Record<string, string | string[] | null>, push?: boolean): void;
  chart(el: HTMLElement, option: Option): void;
  onCleanup(f: () => void): void;
}

export function currentFilters(params: URLSearchParams): Query {
  const q: Query = {};
  for (const name of GLOBAL_FILTERS) {
    const v = params.get(name);
    if (v) q[name] = v;
  }
  return q;
}

type Navigate = (url: string, push: boolean) => void;
let navigateImpl: Navigate = (url) => {
  location.href = url;
};

export function setNavigate(f: Navigate): void {
  navigateImpl = f;
}

export function navigate(url: string, push = true): void {
  navigateImpl(url, push);
}

/** A URL for `path` keeping the global filters of the current address, plus `extra`. */
export function href(path: string, extra: Record<string, string | string[] | null> = {}): string {
  const now = new URLSearchParams(location.search);
  const q = new URLSearchParams();
  for (const name of GLOBAL_FILTERS) {
    const v = now.get(name);
    if (v) q.set(name, v);
  }
  for (const [name, value] of Object.entries(extra)) {
    q.delete(name);
    if (value === null) continue;
    if (Array.isArray(value)) value.forEach((v) => q.append(name, v));
    else q.set(name, value);
  }
  const text = q.toString();
  return text ? `${path}?${text}` : path;
}

/** An in-app link (client-side navigation, keeps the global filters). */
export function link(path: string, text: string | Node, extra: Record<string, string | string[] | null> = {}, attrs: Record<string, string> = {}): HTMLAnchorElement {
  return h("a", { href: href(path, extra), "data-link": "", ...attrs }, text);
}

/** The link to a customer's view; analyses report customers by their number (`42` → `c42`). */
export function customerLink(id: number | string, text?: string): HTMLAnchorElement {
  const cid = typeof id === "number" ? `c${id}` : id;
  return link(`/customers/${encodeURIComponent(cid)}`, text ?? cid, {}, { class: "customer-link" });
}

export interface Stats {
  events: number;
  customers: number;
  first_event: string | null;
  last_event: string | null;
  by_channel: { name: string; events: number }[];
  by_activity: { name: string; events: number }[];
  by_stage: { name: string; events: number }[];
}

let statsCache: Promise<Stats> | null = null;
/** What the project holds (cached per page load): step names for pickers, the time range. */
export function stats(): Promise<Stats> {
  if (!statsCache) {
    statsCache = get<Stats>("/api/v1/stats");
    statsCache.catch(() => {
      statsCache = null;
    });
  }
  return statsCache;
}

export function resetStats(): void {
  statsCache = null;
}

export function chartBox(className = "chart"): HTMLDivElement {
  return h("div", { class: className });
}

export { makeChart };
