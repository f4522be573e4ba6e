// pushwire admin page: signs in with the API key (or an admin JWT), gets an admin token from
// POST /admin/session, and follows the figures every server process publishes to the stats
// channel, over pushwire itself (pushwire.js). The key is sent only in an Authorization
// header and kept in this tab's sessionStorage; no library, no file from elsewhere.
"use strict";

(function () {
  const STORE = "pushwire-admin";
  const POINTS = 120; // points kept per chart: two minutes at one set of figures a second
  const COLORS = ["--s1", "--s2", "--s3", "--s4", "--s5", "--s6", "--s7"];
  // One colour per transport, the same in the chart and the bars.
  const TRANSPORTS = ["websocket", "sse", "stream", "iframe", "longpoll", "polling", "tcp"];
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  let credential = null; // the API key or admin JWT, while signed in
  let session = null; // the answer of POST /admin/session
  let pw = null;
  const nodes = new Map(); // node -> its latest figures
  const charts = {};

  // -- numbers and drawing ------------------------------------------------------------------

  function format(value) {
    if (value === undefined || value === null || Number.isNaN(value)) return "–";
    if (value >= 1e6) return (value / 1e6).toFixed(value >= 1e7 ? 0 : 1) + "M";
    if (value >= 1e4) return (value / 1e3).toFixed(value >= 1e5 ? 0 : 1) + "k";
    if (Number.isInteger(value) || value >= 100) return String(Math.round(value));
    return value.toFixed(1).replace(/\.0$/, "");
  }

  function color(index) {
    return getComputedStyle(document.documentElement).getPropertyValue(COLORS[index % COLORS.length]).trim();
  }

  function seriesColor(name, index) {
    if (name === "none") return getComputedStyle(document.documentElement).getPropertyValue("--muted").trim();
    const known = TRANSPORTS.indexOf(name);
    return color(known >= 0 ? known : index);
  }

  function el(name, attributes, text) {
    const node = name.startsWith("svg:")
      ? document.createElementNS(SVG, name.slice(4))
      : document.createElement(name);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // The top of the y axis: four grid steps of 1, 2 or 5 times a power of ten (whole
  // numbers when every value is one).
  function niceMax(value, whole) {
    const wanted = Math.max(value, whole ? 4 : 1) / 4;
    const power = Math.pow(10, Math.floor(Math.log10(wanted)));
    for (const factor of [1, 2, 5, 10]) {
      const step = factor * power;
      if (step >= wanted && (!whole || Number.isInteger(step))) return 4 * step;
    }
    return 40 * power;
  }

  // A line chart drawn in SVG: a series per name, the last POINTS values of each.
  class LineChart {
    constructor(figure) {
      this.figure = figure;
      this.series = new Map(); // name -> values
      this.count = 0;
    }

    push(values) {
      const length = this.count;
      for (const [name, value] of Object.entries(values)) {
        if (!this.series.has(name)) this.series.set(name, new Array(length).fill(0));
      }
      for (const [name, list] of this.series) list.push(values[name] || 0);
      this.count = Math.min(length + 1, POINTS);
      for (const list of this.series.values()) if (list.length > POINTS) list.splice(0, list.length - POINTS);
      this.figure.dataset.points = String(Number(this.figure.dataset.points) + 1);
      this.draw();
    }

    draw() {
      const width = Math.max(this.figure.clientWidth, 240);
      const height = 180, left = 40, right = 8, top = 8, bottom = 20;
      const all = [...this.series.values()].flat();
      const max = niceMax(Math.max(0, ...all), all.every(Number.isInteger));
      const svg = el("svg:svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img" });
      const x = (i) => left + (i / (POINTS - 1)) * (width - left - right);
      const y = (v) => top + (1 - v / max) * (height - top - bottom);
      for (let step = 0; step <= 4; step++) {
        const value = (max * step) / 4;
        svg.append(el("svg:line", { class: "gridline", x1: left, x2: width - right, y1: y(value), y2: y(value) }));
        svg.append(el("svg:text", { class: "axis", x: left - 6, y: y(value) + 4, "text-anchor": "end" }, format(value)));
      }
      svg.append(el("svg:text", { class: "axis", x: left, y: height - 4 }, `${POINTS} s ago`));
      svg.append(el("svg:text", { class: "axis", x: width - right, y: height - 4, "text-anchor": "end" }, "now"));
      const legend = el("ul", { class: "legend" });
      let index = 0;
      for (const [name, list] of this.series) {
        const stroke = seriesColor(name, index++);
        const offset = POINTS - list.length;
        const points = list.map((v, i) => `${x(offset + i).toFixed(1)},${y(v).toFixed(1)}`);
        if (points.length === 1) points.push(`${x(POINTS - 1).toFixed(1)},${y(list[0]).toFixed(1)}`);
        const first = points[0].split(",")[0], last = points[points.length - 1].split(",")[0];
        const base = y(0).toFixed(1);
        svg.append(el("svg:polygon", { class: "area", fill: stroke, points: `${first},${base} ${points.join(" ")} ${last},${base}` }));
        const line = el("svg:polyline", { class: "line", stroke, points: points.join(" "), "data-series": name });
        if (name === "none") line.setAttribute("stroke-dasharray", "4 3"); // between connections
        svg.append(line);
        const item = el("li");
        const swatch = el("i");
        swatch.style.background = stroke;
        item.append(swatch, `${name} `, el("b", {}, format(list[list.length - 1])));
        legend.append(item);
      }
      this.figure.replaceChildren(svg, legend);
    }
  }

  // -- the figures of every node, added up ----------------------------------------------------

  function live() {
    const now = Date.now() / 1000;
    for (const [node, figures] of nodes) {
      if (now - figures.received > Math.max(5, figures.interval * 5)) nodes.delete(node);
    }
    return [...nodes.values()];
  }

  function sum(list, pick) {
    const total = {};
    for (const figures of list) {
      for (const [key, value] of Object.entries(pick(figures) || {})) total[key] = (total[key] || 0) + value;
    }
    return total;
  }

  function received(figures) {
    figures.received = Date.now() / 1000;
    nodes.set(figures.node, figures);
    const list = live();
    const sessions = sum(list, (f) => f.sessions);
    const rates = sum(list, (f) => f.rates);
    const open = list.reduce((total, f) => total + f.connections.open, 0);
    $("tile-connections").textContent = format(open);
    $("tile-sessions").textContent = format(Object.values(sessions).reduce((a, b) => a + b, 0));
    $("tile-published").textContent = format(rates.published || 0);
    $("tile-deliveries").textContent = format(rates.deliveries || 0);
    $("tile-nodes").textContent = String(list.length);
    showTransports(sessions);
    showTotals(list, rates);
    showChannels(list);
    // One point per round of figures: when the first node (by name) reports.
    const leader = list.map((f) => f.node).sort()[0];
    if (figures.node === leader) {
      charts.messages.push({ published: rates.published || 0, delivered: rates.deliveries || 0 });
      const shown = {};
      for (const [name, count] of Object.entries(sessions)) if (name !== "none" || count) shown[name] = count;
      charts.sessions.push(shown);
    }
  }

  function showTransports(sessions) {
    const list = $("transports");
    const names = Object.keys(sessions).sort();
    const max = Math.max(1, ...Object.values(sessions));
    if (!names.length) {
      list.replaceChildren(el("li", { class: "empty" }, "No session."));
      return;
    }
    list.replaceChildren(...names.map((name, index) => {
      const fill = el("div", { class: "fill" });
      fill.style.width = `${(100 * sessions[name]) / max}%`;
      fill.style.background = seriesColor(name, index);
      const track = el("div", { class: "track" });
      track.append(fill);
      const item = el("li", { "data-transport": name });
      item.append(el("span", { class: "name" }, name), track,
        el("span", { class: "count", "data-testid": `transport-${name}` }, String(sessions[name])));
      return item;
    }));
  }

  function showTotals(list, rates) {
    const totals = sum(list, (f) => f.totals);
    const accepted = list.reduce((total, f) => total + f.connections.accepted, 0);
    const subscriptions = list.reduce((total, f) => total + f.subscriptions, 0);
    const rows = [
      ["Published, in all", format(totals.published)],
      ["Delivered, in all", format(totals.deliveries)],
      ["Published, B/s", format(rates.published_bytes || 0)],
      ["Delivered, B/s", format(rates.delivered_bytes || 0)],
      ["Subscriptions", format(subscriptions)],
      ["Connections accepted", format(accepted)],
      ["Refusals, in all", format(totals.refusals)],
    ];
    $("totals").replaceChildren(...rows.map(([name, value]) => {
      const row = el("div");
      row.append(el("dt", {}, name), el("dd", {}, value));
      return row;
    }));
  }

  function showChannels(list) {
    const merged = new Map();
    let total = 0;
    for (const figures of list) {
      total = Math.max(total, figures.channel_count);
      for (const row of figures.channels) {
        const entry = merged.get(row.channel) || { subscribers: 0, users: new Set(), more: 0 };
        entry.subscribers += row.subscribers;
        for (const user of row.users) entry.users.add(user);
        entry.more += row.more_users;
        merged.set(row.channel, entry);
      }
    }
    const rows = [...merged.entries()].sort((a, b) => b[1].subscribers - a[1].subscribers || (a[0] < b[0] ? -1 : 1));
    $("tile-channels").textContent = format(Math.max(total, rows.length));
    $("channel-note").textContent = rows.length ? `(${rows.length} shown)` : "";
    const body = $("channel-rows");
    if (!rows.length) {
      const cell = el("td", { colspan: "3", class: "empty" }, "No channel has a subscriber.");
      const row = el("tr");
      row.append(cell);
      body.replaceChildren(row);
      return;
    }
    body.replaceChildren(...rows.map(([channel, entry]) => {
      const row = el("tr", { "data-channel": channel });
      const users = el("td");
      for (const user of [...entry.users].sort()) users.append(el("span", { class: "user" }, user));
      if (entry.more) users.append(el("span", { class: "muted" }, `+${entry.more}`));
      if (!entry.users.size && !entry.more) users.append(el("span", { class: "muted" }, "anonymous"));
      row.append(el("td", { class: "channel" }, channel),
        el("td", { class: "num", "data-testid": "subscribers" }, String(entry.subscribers)), users);
      return row;
    }));
  }

  // -- signing in, and the pushwire connection ------------------------------------------------

  function status(state, text) {
    const node = $("status");
    // Connections lost since signing in (the tests read it: a token renewed in time loses none).
    if (node.dataset.state === "live" && state === "down") node.dataset.drops = String(Number(node.dataset.drops || 0) + 1);
    node.dataset.state = state;
    node.textContent = text;
  }

  async function fetchSession(given) {
    const response = await fetch("/admin/session", {
      method: "POST",
      headers: { Authorization: `Bearer ${given}` },
      credentials: "omit",
      cache: "no-store",
    });
    if (response.status === 401) throw new Error("Wrong API key or token.");
    if (!response.ok) throw new Error((await response.text()).trim() || `HTTP ${response.status}`);
    return response.json();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    pw = new Pushwire(`${scheme}//${location.host}/pushwire`, {
      token: session.token,
      // A new admin token while the key is still in hand (an admin JWT cannot be renewed here).
      getToken: () => fetchSession(credential).then((answer) => answer.token),
      // Transports whose hello (and token) goes in a body or a WebSocket frame, never a URL.
      transports: ["websocket", "stream", "longpoll", "polling"],
    });
    pw.addEventListener("open", () => status("live", "live"));
    pw.addEventListener("reconnected", () => status("live", "live"));
    pw.addEventListener("close", (event) => {
      status("down", `disconnected (${event.code})`);
      if (event.code === 4102 || event.code === 4005) signOut("Signed out: the token is no longer valid.");
    });
    pw.addEventListener("message", (event) => {
      if (event.channel !== session.channel) return;
      try {
        received(JSON.parse(event.data));
      } catch (error) {
        console.error("admin figures", error);
      }
    });
    pw.subscribe(session.channel).catch((error) => {
      status("down", "refused");
      $("login-error").textContent = `The stats channel refused: ${error.message}`;
    });
    status("down", "connecting…");
  }

  async function signIn(given) {
    $("login-error").textContent = "";
    try {
      session = await fetchSession(given);
    } catch (error) {
      $("login-error").textContent = error.message;
      sessionStorage.removeItem(STORE);
      return;
    }
    credential = given;
    sessionStorage.setItem(STORE, given);
    $("credential").value = "";
    $("login").hidden = true;
    $("dashboard").hidden = false;
    $("logout").hidden = false;
    $("publish-button").disabled = !session.publish;
    if (!session.publish) $("publish-result").textContent = "Publishing needs the API key.";
    charts.messages = new LineChart($("chart-messages"));
    charts.sessions = new LineChart($("chart-sessions"));
    connect();
  }

  function signOut(message) {
    sessionStorage.removeItem(STORE);
    credential = session = null;
    if (pw) pw.close();
    pw = null;
    nodes.clear();
    $("dashboard").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    status("out", "signed out");
  }

  async function publish(event) {
    event.preventDefault();
    const channel = $("publish-channel").value.trim();
    const result = $("publish-result");
    result.textContent = "Publishing…";
    try {
      const response = await fetch(`/api/publish/${encodeURIComponent(channel)}`, {
        method: "POST",
        headers: { Authorization: `Bearer ${credential}`, "Content-Type": "text/plain; charset=utf-8" },
        body: $("publish-data").value,
        credentials: "omit",
      });
      const text = await response.text();
      if (!response.ok) throw new Error(text.trim() || `HTTP ${response.status}`);
      const answer = JSON.parse(text);
      result.textContent = `Published to ${answer.channel} at offset ${answer.offset}.`;
      result.dataset.offset = String(answer.offset);
    } catch (error) {
      result.textContent = `Not published: ${error.message}`;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      signIn($("credential").value.trim());
    });
    $("logout").addEventListener("click", () => signOut());
    $("publish-form").addEventListener("submit", publish);
    window.addEventListener("resize", () => {
      for (const chart of Object.values(charts)) if (chart.count) chart.draw();
    });
    const kept = sessionStorage.getItem(STORE);
    if (kept) signIn(kept);
  });
})();
