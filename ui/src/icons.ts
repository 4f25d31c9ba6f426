import { s } from "./dom";

// Inline SVG channel icons (24×24, stroked): no icon font or CDN, so they work offline.
const PATHS: Record<string, string> = {
  web: "M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18M3 12h18M12 3c3 3 3 15 0 18M12 3c-3 3-3 15 0 18",
  mobile_app: "M8 2h8a2 2 0 0 1 2 2v16a2 2 0 0 1-2 2H8a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2M11 18h2",
  email: "M3 5h18v14H3zM3 6l9 7l9-7",
  sms: "M4 4h16v12H9l-5 4zM8 10h.01M12 10h.01M16 10h.01",
  chat: "M4 4h16v11H10l-4 4v-4H4zM8 9h8M8 12h5",
  chatbot: "M6 8h12v10H6zM12 4v4M9 12h.01M15 12h.01M10 15h4M4 12v3M20 12v3",
  phone:
    "M5 3h4l2 5l-2.5 1.5a11 11 0 0 0 6 6L16 13l5 2v4a2 2 0 0 1-2 2A16 16 0 0 1 3 5a2 2 0 0 1 2-2",
  ivr: "M6 4h.01M12 4h.01M18 4h.01M6 10h.01M12 10h.01M18 10h.01M6 16h.01M12 16h.01M18 16h.01M12 21h.01",
  social: "M8 3L6 21M16 3l-2 18M3 8h18M3 15h18",
  store: "M3 9l2-5h14l2 5M3 9h18v2a3 3 0 0 1-6 0a3 3 0 0 1-6 0a3 3 0 0 1-6 0zM5 12v8h14v-8M10 20v-5h4v5",
  push: "M6 16V11a6 6 0 0 1 12 0v5l2 2H4zM10 20a2 2 0 0 0 4 0",
  mail: "M4 6h16v12H4zM4 6l8 6l8-6M15 14h3",
  other: "M12 8a4 4 0 1 0 0 8a4 4 0 1 0 0-8",
};

export const CHANNEL_COLORS: Record<string, string> = {
  web: "#2f6fde",
  mobile_app: "#7c4dcc",
  email: "#0f9d8a",
  sms: "#6a9a1f",
  chat: "#d9822b",
  chatbot: "#c0568f",
  phone: "#d64545",
  ivr: "#a3553a",
  social: "#1c9bd1",
  store: "#8a7a12",
  push: "#5a6b7d",
  mail: "#7d6b5a",
  other: "#888888",
};

export function channelColor(channel: string): string {
  return CHANNEL_COLORS[channel] ?? CHANNEL_COLORS.other ?? "#888";
}

export function channelIcon(channel: string, size = 16): SVGElement {
  const path = PATHS[channel] ?? PATHS.other ?? "";
  return s(
    "svg",
    {
      class: "icon",
      width: size,
      height: size,
      viewBox: "0 0 24 24",
      fill: "none",
      stroke: channelColor(channel),
      "stroke-width": 2,
      "stroke-linecap": "round",
      "stroke-linejoin": "round",
      role: "img",
      "aria-label": channel.replace(/_/g, " "),
    },
    s("title", null, channel.replace(/_/g, " ")),
    s("path", { d: path }),
  );
}
