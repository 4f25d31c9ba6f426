// Journey triggers as the UI shows them: rule summaries, agent tasks and their actions.
// Shared by the Rules and Tasks pages and the customer view's Tasks panel.

import { request } from "./api";
import { customerLink } from "./app";
import { errorBox, field, h } from "./dom";
import { label, usTime } from "./format";

export type PropertyValue = string | number | boolean;

export interface Filter {
  activity?: string;
  channel?: string;
  properties?: Record<string, PropertyValue>;
}
export interface Step extends Filter {
  within?: string;
}
export interface Unless extends Filter {
  after?: number | string;
  within?: string;
}
export type Action =
  | { webhook: { endpoint?: string; url?: string; secret?: string } }
  | { task: { queue: string; title: string } }
  | { emit: { activity: string; channel?: string; properties?: Record<string, PropertyValue> } };

export interface RuleDef {
  name: string;
  description?: string;
  steps: Step[];
  unless?: Unless[];
  customer?: { traits?: Record<string, string[]> };
  cooldown: string;
  tolerance: string;
  stale_after: string;
  actions: Action[];
}
export interface RuleInfo {
  name: string;
  enabled: boolean;
  rule: RuleDef;
  secret: string;
  created_at: number;
  updated_at: number;
}
export interface ChainStep {
  step: number;
  activity: string | null;
  channel: string | null;
  timestamp: number;
}
export interface FiringView {
  id: string;
  customer_id: string | null;
  completed_at: number;
  steps: ChainStep[];
}
export interface ReplayReport {
  rule: string;
  from: number | null;
  to: number | null;
  events_read: number;
  customers: number;
  firings: number;
  fired: FiringView[];
}
export type TaskStatus = "open" | "claimed" | "done";
export const TASK_STATES: TaskStatus[] = ["open", "claimed", "done"];
export interface Task {
  id: number;
  queue: string;
  title: string;
  status: TaskStatus;
  agent: string | null;
  rule: string;
  firing: string;
  customer_id: string;
  /** `email:…`, else `phone:…`, `user_id:…`, `crm_id:…`, the first identifier, the id. */
  customer_label: string;
  /** When the firing's last step happened; null when the firing is no longer recorded. */
  completed_at: number | null;
  /** The events that completed the firing: why the task exists. */
  steps: ChainStep[];
  created_at: number;
  updated_at: number;
}
export interface TaskList {
  counts: Record<TaskStatus, number>;
  tasks: Task[];
}

export function filterText(f: Filter): string {
  const parts = [f.activity ? label(f.activity) : "any event"];
  if (f.channel) parts.push(`on ${label(f.channel)}`);
  const props = Object.entries(f.properties ?? {});
  if (props.length) parts.push(`(${props.map(([k, v]) => `${k} = ${String(v)}`).join(", ")})`);
  return parts.join(" ");
}

/** "payment failed on web → complaint on social within 2h; unless callback completed within 1h". */
export function stepsSummary(rule: RuleDef): string {
  const steps = rule.steps.map((s, i) => `${filterText(s)}${i > 0 && s.within ? ` within ${s.within}` : ""}`).join(" → ");
  const unless = (rule.unless ?? []).map((u) => `${filterText(u)}${u.within ? ` within ${u.within}` : ""}`);
  return unless.length ? `${steps}; unless ${unless.join(", ")}` : steps;
}

export function actionText(a: Action): string {
  if ("webhook" in a) return `webhook ${a.webhook.endpoint ?? a.webhook.url ?? ""}`.trim();
  if ("task" in a) return `task in ${a.task.queue}: ${a.task.title}`;
  return `emit ${label(a.emit.activity)}${a.emit.channel ? ` on ${label(a.emit.channel)}` : ""}`;
}

const RULE_FIELDS = ["name", "description", "steps", "unless", "customer", "cooldown", "tolerance", "stale_after", "actions"];

/** A rule as JSON in the format's order (the API's JSON has its keys sorted), for reading
 * and editing. */
export function ruleJson(rule: RuleDef): string {
  const fields = rule as unknown as Record<string, unknown>;
  const keys = [...RULE_FIELDS.filter((k) => k in fields), ...Object.keys(fields).filter((k) => !RULE_FIELDS.includes(k)).sort()];
  return JSON.stringify(Object.fromEntries(keys.map((k) => [k, fields[k]])), null, 2);
}

const SPAN_UNITS: Record<string, number> = { ms: 1e3, s: 1e6, m: 60e6, h: 3600e6, d: 86400e6 };

/** A rule's duration (`1h30m`, `500ms`, `0`) in microseconds; 0 for what does not parse. */
export function spanMicros(text: string | undefined): number {
  if (!text) return 0;
  let total = 0;
  for (const m of text.matchAll(/(\d+)(ms|s|m|h|d)/g)) total += Number(m[1]) * (SPAN_UNITS[m[2] ?? ""] ?? 0);
  return total;
}

export function chainList(steps: ChainStep[]): HTMLElement {
  return h(
    "ol",
    { class: "chain" },
    steps.map((s) =>
      h("li", null, h("b", null, s.activity ? label(s.activity) : "event"), s.channel ? ` on ${label(s.channel)}` : "", h("small", { class: "muted" }, ` ${usTime(s.timestamp)}`)),
    ),
  );
}

/** A link to the customer's view, showing what an agent recognises them by (the task's
 * label: an email, a phone…) with the id as its title. */
export function labelledCustomerLink(task: Task): HTMLAnchorElement {
  const a = customerLink(task.customer_id);
  const text = task.customer_label.replace(/^(email|phone|user_id|crm_id):/, "");
  if (task.customer_label !== task.customer_id) {
    a.textContent = text;
    a.title = task.customer_id;
  }
  return a;
}

// ---- the agent and task actions ----------------------------------------------------------

const AGENT_KEY = "omnitrail.agent";

export function agentName(): string | null {
  return localStorage.getItem(AGENT_KEY);
}

/** The agent's name: asked once in a small dialog, then remembered in this browser. */
export function askAgent(force = false): Promise<string | null> {
  const known = agentName();
  if (known && !force) return Promise.resolve(known);
  return new Promise((resolve) => {
    const input = h("input", { type: "text", name: "agent", required: true, autocomplete: "off", value: known ?? "", "data-testid": "agent-name" });
    const dialog = h(
      "dialog",
      { class: "card agent-dialog", "aria-label": "Your agent name" },
      h(
        "form",
        { method: "dialog" },
        h("h2", null, "Who is claiming?"),
        h("p", { class: "muted" }, "Your name or agent id is recorded on the tasks you claim. It is asked once and kept in this browser."),
        field("Agent name", input),
        h("div", { class: "controls" }, h("button", { type: "submit", value: "ok" }, "Continue"), h("button", { type: "button", class: "ghost", value: "cancel", onclick: () => dialog.close("cancel") }, "Cancel")),
      ),
    );
    dialog.addEventListener("close", () => {
      const name = input.value.trim();
      dialog.remove();
      if (dialog.returnValue === "ok" && name) {
        localStorage.setItem(AGENT_KEY, name);
        resolve(name);
      } else resolve(null);
    });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}

type TaskAction = "claim" | "done" | "reopen";

/** The buttons a task's state allows; `changed` gets the task after the change. Errors (a task
 * someone else claimed meanwhile: 409) show next to the buttons, in the API's words. */
export function taskButtons(task: Task, changed: (t: Task) => void): HTMLElement {
  const status = h("span", { "aria-live": "polite" });
  const box = h("div", { class: "task-actions" });
  const act = async (action: TaskAction) => {
    status.replaceChildren();
    let agent: string | null = null;
    if (action === "claim") {
      agent = await askAgent();
      if (!agent) return;
    }
    box.querySelectorAll("button").forEach((b) => (b.disabled = true));
    try {
      const body = agent ? { action, agent } : { action };
      changed(await request<Task>("PATCH", `/api/v1/tasks/${task.id}`, { body }));
    } catch (err) {
      box.querySelectorAll("button").forEach((b) => (b.disabled = false));
      status.append(errorBox(err instanceof Error ? err.message : String(err)));
    }
  };
  const button = (action: TaskAction, text: string, ghost: boolean) =>
    h(
      "button",
      { type: "button", class: ghost ? "ghost small" : "small", "data-action": action, "data-focus-key": `task-${task.id}-${action}`, "aria-label": `${text}: task ${task.id}, ${task.title}`, onclick: () => void act(action) },
      text,
    );
  if (task.status === "open") box.append(button("claim", "Claim", false), button("done", "Done", true));
  if (task.status === "claimed") box.append(button("done", "Done", false), button("reopen", "Reopen", true));
  if (task.status === "done") box.append(button("reopen", "Reopen", true));
  box.append(status);
  return box;
}

export function stateBadge(task: Task): HTMLElement {
  return h("span", { class: `task-state ${task.status}` }, task.status === "claimed" && task.agent ? `claimed by ${task.agent}` : task.status);
}
