import { get } from "../api";
import { link, type Ctx } from "../app";
import { clear, errorBox, h } from "../dom";
import { num, usTime } from "../format";
import { agentName, askAgent, chainList, labelledCustomerLink, stateBadge, TASK_STATES, taskButtons, type Task, type TaskList, type TaskStatus } from "../triggers";

/** The queue is live: new callbacks arrive while an agent watches it. */
const REFRESH_MS = 4000;
/** Tasks listed at once, oldest first; the counts cover all of them. */
const PAGE = 200;

function validDay(date: string | null): string | null {
  return date && !Number.isNaN(Date.parse(`${date}T00:00:00Z`)) ? date : null;
}

function taskRow(task: Task, changed: (t: Task) => void): HTMLElement {
  const why = task.steps.length
    ? chainList(task.steps)
    : h("p", { class: "muted" }, "The firing's events are no longer recorded; see the customer's timeline.");
  return h(
    "li",
    { class: `task ${task.status}`, "data-task-id": String(task.id) },
    h(
      "div",
      { class: "task-main" },
      h("h3", null, task.title),
      h("div", { class: "task-meta" }, labelledCustomerLink(task), h("span", null, "rule ", link("/rules", task.rule, { rule: task.rule })), h("span", { class: "muted" }, `queue ${task.queue}`), h("span", { class: "muted" }, `created ${usTime(task.created_at)}`), stateBadge(task)),
      h("div", { class: "task-why" }, h("span", { class: "muted" }, "Why: "), why),
    ),
    taskButtons(task, changed),
  );
}

export async function renderTasks(ctx: Ctx): Promise<void> {
  const asked = ctx.params.get("status");
  const status: TaskStatus = TASK_STATES.includes(asked as TaskStatus) ? (asked as TaskStatus) : "open";
  const from = validDay(ctx.params.get("from"));
  const to = validDay(ctx.params.get("to"));

  const counts = h("div", { class: "chip-filter", role: "group", "aria-label": "Task state", "data-testid": "task-counts" });
  const heading = h("h2", { tabindex: "-1" }, `${status[0]?.toUpperCase()}${status.slice(1)} tasks`);
  const list = h("ul", { class: "task-list", "data-testid": "tasks", "aria-label": `${status} tasks` });
  const problem = h("div", { "aria-live": "polite" });
  // Says what an action did: the row itself may leave the filtered list.
  const announce = h("p", { class: "muted", role: "status", "data-testid": "task-announce" });
  const agent = h("span", { class: "muted" });
  const showAgent = () => {
    const name = agentName();
    clear(agent);
    agent.append(name ? `Claiming as ${name} ` : "You will be asked your agent name on the first claim. ");
    if (name)
      agent.append(
        h("button", { type: "button", class: "ghost small", onclick: () => void askAgent(true).then(showAgent) }, "Change"),
      );
  };
  showAgent();
  const notes = [
    ctx.params.get("segment") || ctx.params.get("persona") ? h("p", { class: "muted" }, "The segment and persona filters do not apply to the task queue; the date range limits tasks by when they were created.") : null,
  ];

  let listed: TaskList = { counts: { open: 0, claimed: 0, done: 0 }, tasks: [] };
  const rows = new Map<number, { sig: string; el: HTMLElement }>();

  const draw = () => {
    clear(counts);
    counts.append(h("span", { class: "muted" }, "State: "));
    for (const s of TASK_STATES) {
      const n = listed.counts[s];
      counts.append(link("/tasks", `${s} (${num(n)})`, { status: s === "open" ? null : s }, s === status ? { "aria-current": "true", class: "chip-link", "data-state": s } : { class: "chip-link", "data-state": s }));
    }
    // A task changed here may have left this state before the next refresh.
    const shown = listed.tasks.filter((t) => t.status === status);
    // Rows that did not change are kept as they are, so a focused button stays focused
    // while the queue refreshes around it.
    const active = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    const activeKey = active?.dataset.focusKey;
    const focusInList = active !== null && list.contains(active);
    const els = shown.map((t) => {
      const sig = `${t.status}|${t.agent ?? ""}|${t.updated_at}`;
      const old = rows.get(t.id);
      if (old && old.sig === sig) return old.el;
      const el = taskRow(t, changed);
      rows.set(t.id, { sig, el });
      return el;
    });
    const total = listed.counts[status];
    const more = total > shown.length ? h("li", { class: "empty", "data-testid": "tasks-more" }, `The oldest ${num(shown.length)} of ${num(total)} ${status} tasks are shown; the rest follow as these are done.`) : null;
    const same = !more && els.length === list.children.length && els.every((el, i) => list.children[i] === el);
    if (!same) {
      list.replaceChildren(...els);
      if (more) list.append(more);
      if (shown.length === 0) {
        const none = TASK_STATES.every((s) => listed.counts[s] === 0) && from === null && to === null;
        const why = none ? " No rule has queued a task yet: a rule with a task action (see Rules) adds one each time it fires." : "";
        list.append(h("li", { class: "empty" }, `${from !== null || to !== null ? `No ${status} tasks created in the date range.` : `No ${status} tasks.`}${why}`));
      }
      if (focusInList && !list.contains(document.activeElement)) {
        const again = activeKey ? list.querySelector<HTMLElement>(`[data-focus-key="${activeKey}"]`) : null;
        (again ?? heading).focus({ preventScroll: true });
      }
    }
  };

  let busy = false;
  // Counts completed loads, so a test can tell a refresh has happened.
  let loads = 0;
  const load = async () => {
    if (busy) return;
    busy = true;
    try {
      listed = await get<TaskList>("/api/v1/tasks", { status, from, to, limit: PAGE }, ctx.signal);
      draw();
      clear(problem);
      loads += 1;
      list.dataset.loads = String(loads);
    } finally {
      busy = false;
    }
  };
  const changed = (t: Task) => {
    announce.textContent = `Task ${t.id} is ${t.status}${t.status === "claimed" && t.agent ? ` by ${t.agent}` : ""}.`;
    const before = listed.tasks.find((x) => x.id === t.id);
    const counts = { ...listed.counts };
    if (before && before.status !== t.status) {
      counts[before.status] -= 1;
      counts[t.status] += 1;
    }
    listed = { counts, tasks: listed.tasks.map((x) => (x.id === t.id ? t : x)) };
    draw();
    void refresh();
  };
  const refresh = async () => {
    if (ctx.signal.aborted || document.hidden) return;
    try {
      await load();
    } catch (err) {
      if (ctx.signal.aborted) return;
      clear(problem);
      problem.append(errorBox(`the queue could not be refreshed: ${err instanceof Error ? err.message : String(err)}`));
    }
  };

  await load();
  const timer = window.setInterval(() => void refresh(), REFRESH_MS);
  ctx.onCleanup(() => window.clearInterval(timer));

  ctx.main.append(
    h(
      "section",
      { class: "card" },
      h("div", { class: "task-head" }, heading, agent),
      h("p", { class: "muted" }, "Callbacks and other tasks rules queued, oldest first. The list refreshes every few seconds."),
      counts,
      notes,
      problem,
      announce,
      list,
    ),
  );
}
