const intFmt = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
const decFmt = new Intl.NumberFormat("en", { maximumFractionDigits: 2 });

export function num(n: number | null | undefined): string {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  return Number.isInteger(n) || Math.abs(n) >= 100 ? intFmt.format(n) : decFmt.format(n);
}

export function pct(x: number | null | undefined, digits = 1): string {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return `${(x * 100).toFixed(digits)}%`;
}

export function sentiment(x: number | null | undefined): string {
  if (x === null || x === undefined) return "–";
  return `${x >= 0 ? "+" : ""}${x.toFixed(2)}`;
}

export function lift(x: number | null | undefined): string {
  if (x === null || x === undefined) return "–";
  return `${x.toFixed(2)}×`;
}

/** Seconds as the two largest units: "3d 4h", "5m 12s", "0.4s". */
export function dur(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  if (seconds < 1) return `${seconds.toFixed(1)}s`;
  const units: [string, number][] = [
    ["d", 86400],
    ["h", 3600],
    ["m", 60],
    ["s", 1],
  ];
  const parts: string[] = [];
  let rest = Math.round(seconds);
  for (const [name, size] of units) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${name}`);
      rest %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(" ") || "0s";
}

/** Microseconds since the epoch (the customer view's times) as local date and time. */
export function usTime(us: number | null | undefined): string {
  if (us === null || us === undefined) return "–";
  const d = new Date(us / 1000);
  return `${d.toLocaleDateString("en-CA")} ${d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" })}`;
}

export function usDate(us: number | null | undefined): string {
  if (us === null || us === undefined) return "–";
  return new Date(us / 1000).toLocaleDateString("en-CA");
}

/** `channel:activity` → [channel, activity]; other steps have no channel. */
export function splitTouchpoint(step: string): [string | null, string] {
  const i = step.indexOf(":");
  return i > 0 ? [step.slice(0, i), step.slice(i + 1)] : [null, step];
}

export function label(text: string): string {
  return text.replace(/_/g, " ");
}
