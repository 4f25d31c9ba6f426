import { get, request } from "../api";
import { link, navigate, type Ctx } from "../app";
import { clear, empty, errorBox, field, h, section } from "../dom";
import { channelIcon } from "../icons";
import { label, num, usDate, usTime } from "../format";
import { chainList, stateBadge, taskButtons, type Task, type TaskList } from "../triggers";

interface Note {
  id: number;
  author: string;
  created_at: number;
  updated_at: number;
  text: string;
  topic: string | null;
  event: string | null;
}
interface Entry {
  at: number;
  kind: string;
  channel: string | null;
  activity: string | null;
  properties: Record<string, string> | null;
}
interface Timeline {
  total: number;
  offset: number;
  limit: number;
  entries: Entry[];
}
interface CustomerView {
  customer_id: string;
  summary: string;
  identifiers: { kind: string; value: string }[];
  links: { decision: string; source: string; at: number; identifiers: string[]; reason: string | null }[];
  traits: { name: string; value: string; seen_at: number; channel: string | null }[];
  first_seen: number;
  last_seen: number;
  events: number;
  channels: [string, number][];
  lifecycle: { state: string; since: number; returned_after_days: number | null };
  purchases: { at: number; channel: string; order_id: string | null; value: number | null }[];
  total_value: number;
  issues: { at: number; channel: string; activity: string; kind: string; topic: string | null; ticket_id: string | null; resolved_at: number | null }[];
  friction: { kind: string; detail: string }[];
  notes: Note[];
  timeline: Timeline;
  tasks: Task[];
}

const PAGE = 50;
const AUTHOR_KEY = "omnitrail.author";

function searchForm(value: string): HTMLFormElement {
  const input = h("input", {
    type: "search",
    name: "id",
    value,
    placeholder: "phone, email, @handle, user id, crm id, c42 …",
    autocomplete: "off",
    spellcheck: "false",
    "data-testid": "customer-search",
  });
  const form = h("form", { class: "search", role: "search" }, field("Find a customer by any identifier", input), h("button", { type: "submit" }, "Find"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const id = input.value.trim();
    if (id) navigate(`/customers/${encodeURIComponent(id)}`);
  });
  queueMicrotask(() => {
    if (!value) input.focus();
  });
  return form;
}

function entryRow(e: Entry): HTMLElement {
  const props = Object.entries(e.properties ?? {});
  return h(
    "li",
    { class: `tl-entry ${e.kind}` },
    h("span", { class: "tl-icon" }, e.channel ? channelIcon(e.channel, 18) : "✎"),
    h("time", null, usTime(e.at)),
    h("span", { class: "tl-what" }, h("b", null, e.activity ? label(e.activity) : e.kind), e.channel ? h("span", { class: "muted" }, ` · ${label(e.channel)}`) : null),
    props.length ? h("span", { class: "tl-props" }, props.map(([k, v]) => h("span", { class: "prop" }, `${k}: ${v}`))) : null,
  );
}

function notesSection(view: CustomerView, refresh: () => Promise<void>): HTMLElement {
  const list = h("ul", { class: "notes", "data-testid": "notes" });
  const draw = (notes: Note[]) => {
    clear(list);
    if (notes.length === 0) list.append(h("li", { class: "muted" }, "No notes yet."));
    for (const n of notes) {
      const text = h("p", { class: "note-text" }, n.text);
      const item = h(
        "li",
        { class: "note" },
        h("div", { class: "note-meta" }, `${n.author || "unknown"} · ${usTime(n.updated_at)}${n.updated_at !== n.created_at ? " (edited)" : ""}${n.topic ? ` · ${n.topic}` : ""}`),
        text,
      );
      const edit = h("button", { type: "button", class: "ghost small" }, "Edit");
      edit.addEventListener("click", () => {
        const area = h("textarea", { rows: 3, "aria-label": "Note text" });
        area.value = n.text;
        const status = h("div");
        const save = h("button", { type: "button", class: "small" }, "Save");
        const cancel = h("button", { type: "button", class: "ghost small" }, "Cancel");
        const editor = h("div", { class: "note-editor" }, area, save, cancel, status);
        item.replaceChild(editor, text);
        edit.hidden = true;
        area.focus();
        cancel.addEventListener("click", () => {
          item.replaceChild(text, editor);
          edit.hidden = false;
        });
        save.addEventListener("click", () => {
          request<Note>("PATCH", `/api/v1/notes/${n.id}`, { body: { text: area.value, topic: n.topic } })
            .then(() => refresh())
            .catch((err: unknown) => {
              clear(status);
              status.append(errorBox(err instanceof Error ? err.message : String(err)));
            });
        });
      });
      item.append(edit);
      list.append(item);
    }
  };
  draw(view.notes);

  const text = h("textarea", { rows: 3, required: true, "data-testid": "note-text" });
  const topic = h("input", { type: "text", placeholder: "billing, login …" });
  const author = h("input", { type: "text", value: localStorage.getItem(AUTHOR_KEY) ?? "", placeholder: "your name" });
  const status = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "note-form" }, field("Add a note", text), h("div", { class: "controls" }, field("Topic", topic), field("Author", author), h("button", { type: "submit" }, "Add note")), status);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    clear(status);
    if (author.value.trim()) localStorage.setItem(AUTHOR_KEY, author.value.trim());
    const body: Record<string, string> = { text: text.value };
    if (topic.value.trim()) body.topic = topic.value.trim();
    if (author.value.trim()) body.author = author.value.trim();
    request<Note>("POST", `/api/v1/customers/${encodeURIComponent(view.customer_id)}/notes`, { body })
      .then(() => {
        text.value = "";
        return refresh();
      })
      .catch((err: unknown) => status.append(errorBox(err instanceof Error ? err.message : String(err))));
  });
  return section("Notes", list, form);
}

/** The tasks rules queued for this customer (callbacks), with the queue's own actions. */
function tasksSection(view: CustomerView): HTMLElement {
  const list = h("ul", { class: "task-list compact", "data-testid": "customer-tasks" });
  const status = h("div", { "aria-live": "polite" });
  const draw = (tasks: Task[]) => {
    clear(list);
    if (tasks.length === 0) list.append(h("li", { class: "empty" }, "No tasks for this customer."));
    for (const t of tasks)
      list.append(
        h(
          "li",
          { class: `task ${t.status}`, "data-task-id": String(t.id) },
          h("div", { class: "task-main" }, h("b", null, t.title), h("div", { class: "task-meta" }, stateBadge(t), h("span", null, "rule ", link("/rules", t.rule, { rule: t.rule })), h("small", { class: "muted" }, usTime(t.created_at))), t.steps.length ? h("div", { class: "task-why" }, h("span", { class: "muted" }, "Why: "), chainList(t.steps)) : null),
          taskButtons(t, () => void refresh()),
        ),
      );
  };
  const refresh = async () => {
    clear(status);
    try {
      draw((await get<TaskList>("/api/v1/tasks", { customer: view.customer_id, limit: 1000 })).tasks);
    } catch (err) {
      status.append(errorBox(err instanceof Error ? err.message : String(err)));
    }
  };
  draw(view.tasks);
  return section("Tasks", list, status, h("p", { class: "muted" }, link("/tasks", "The whole task queue")));
}

export async function renderCustomer(ctx: Ctx): Promise<void> {
  const raw = ctx.path.startsWith("/customers/") ? decodeURIComponent(ctx.path.slice("/customers/".length)) : "";
  ctx.main.append(searchForm(raw));
  if (!raw) {
    ctx.main.append(h("p", { class: "muted" }, "Type what the customer gives you: a phone number as they say it, an email, a social handle, an order's customer id. Every identifier of the same person finds the same view."));
    return;
  }
  const channelFilter = ctx.params.getAll("channel");
  const path = `/api/v1/customers/${encodeURIComponent(raw)}`;
  const view = await get<CustomerView>(path, { limit: PAGE, channel: channelFilter }, ctx.signal);

  const open = view.issues.filter((i) => i.resolved_at === null);
  const header = h(
    "section",
    { class: "card customer-head", "data-testid": "customer-summary" },
    h("div", { class: "who" }, h("h2", null, view.identifiers.find((i) => i.kind === "email")?.value ?? view.customer_id), h("span", { class: `state ${view.lifecycle.state}` }, view.lifecycle.state), h("code", null, view.customer_id)),
    h("p", { class: "summary" }, view.summary),
    h(
      "div",
      { class: "facts" },
      h("span", null, `${num(view.events)} events`),
      h("span", null, `since ${usDate(view.first_seen)}`),
      h("span", null, `last ${usTime(view.last_seen)}`),
      h("span", null, `${view.purchases.length} purchases, ${num(view.total_value)} total`),
      h("span", { class: open.length ? "warn" : null }, `${open.length} open issues`),
    ),
    h("div", { class: "channel-mix" }, view.channels.map(([ch, n]) => h("span", { class: "tp", title: `${ch}: ${n} events` }, channelIcon(ch), `${num(n)}`))),
    view.friction.length ? h("ul", { class: "flags", "aria-label": "Friction flags" }, view.friction.map((f) => h("li", { class: "flag" }, `⚑ ${f.detail}`))) : null,
  );

  const timelineList = h("ol", { class: "timeline", "data-testid": "timeline" }, view.timeline.entries.map(entryRow));
  const more = h("button", { type: "button", class: "ghost" }, "Load older");
  let loaded = view.timeline.entries.length;
  const counter = h("p", { class: "muted" });
  const updateCounter = () => {
    counter.textContent = `${num(loaded)} of ${num(view.timeline.total)} entries, newest first`;
    more.hidden = loaded >= view.timeline.total;
  };
  updateCounter();
  more.addEventListener("click", () => {
    more.disabled = true;
    get<CustomerView>(path, { limit: PAGE, offset: loaded, channel: channelFilter }, ctx.signal)
      .then((next) => {
        next.timeline.entries.forEach((e) => timelineList.append(entryRow(e)));
        loaded += next.timeline.entries.length;
        updateCounter();
      })
      .catch((err: unknown) => more.after(errorBox(err instanceof Error ? err.message : String(err))))
      .finally(() => (more.disabled = false));
  });
  const channelChips = h(
    "div",
    { class: "chip-filter", role: "group", "aria-label": "Show channels" },
    h("span", { class: "muted" }, "Channels: "),
    link(ctx.path, "all", { channel: null }, channelFilter.length === 0 ? { "aria-current": "true", class: "chip-link" } : { class: "chip-link" }),
    view.channels.map(([ch]) => link(ctx.path, h("span", { class: "tp" }, channelIcon(ch), label(ch)), { channel: ch }, channelFilter.includes(ch) ? { "aria-current": "true", class: "chip-link" } : { class: "chip-link" })),
  );

  const notesHolder = h("div");
  const refreshNotes = async () => {
    const notes = await get<Note[]>(`/api/v1/customers/${encodeURIComponent(view.customer_id)}/notes`);
    view.notes = notes;
    clear(notesHolder);
    notesHolder.append(notesSection(view, refreshNotes));
  };
  notesHolder.append(notesSection(view, refreshNotes));

  ctx.main.append(
    header,
    h(
      "div",
      { class: "customer-grid" },
      h("div", null, section("Timeline", channelChips, counter, timelineList, more)),
      h(
        "div",
        null,
        tasksSection(view),
        section(
          "Open issues",
          open.length
            ? h("ul", { class: "issues" }, open.map((i) => h("li", null, channelIcon(i.channel), ` ${label(i.kind)}: ${label(i.activity)}${i.topic ? ` (${i.topic})` : ""}`, h("small", { class: "muted" }, ` ${usTime(i.at)}${i.ticket_id ? ` · ${i.ticket_id}` : ""}`))))
            : empty("No open issues."),
          view.issues.length > open.length
            ? h("details", null, h("summary", null, `${view.issues.length - open.length} resolved issues`), h("ul", { class: "issues" }, view.issues.filter((i) => i.resolved_at !== null).map((i) => h("li", null, channelIcon(i.channel), ` ${label(i.kind)}: ${label(i.activity)}${i.topic ? ` (${i.topic})` : ""}`, h("small", { class: "muted" }, ` ${usDate(i.at)} → resolved ${usDate(i.resolved_at)}`)))))
            : null,
        ),
        notesHolder,
        section(
          "Purchases",
          view.purchases.length
            ? h("table", null, h("thead", null, h("tr", null, h("th", null, "date"), h("th", null, "order"), h("th", null, "channel"), h("th", { class: "n" }, "value"))), h("tbody", null, view.purchases.map((p) => h("tr", null, h("td", null, usDate(p.at)), h("td", null, p.order_id ?? "–"), h("td", null, h("span", { class: "tp" }, channelIcon(p.channel), label(p.channel))), h("td", { class: "n" }, num(p.value))))))
            : empty("No purchases."),
        ),
        section(
          "Identifiers and traits",
          h("dl", { class: "pairs" }, view.identifiers.map((i) => [h("dt", null, i.kind), h("dd", null, i.value)])),
          h("dl", { class: "pairs" }, view.traits.map((t) => [h("dt", null, t.name), h("dd", null, t.value, h("small", { class: "muted" }, ` (${t.channel ?? "?"}, ${usDate(t.seen_at)})`))])),
          view.links.some((l) => l.decision === "refused")
            ? h("details", null, h("summary", null, "Refused identity links"), h("ul", null, view.links.filter((l) => l.decision === "refused").map((l) => h("li", null, `${l.identifiers.join(", ")}: ${l.reason ?? ""}`))))
            : null,
        ),
      ),
    ),
  );
}
