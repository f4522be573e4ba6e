// pushwire transport lab: draws /static/lab.json (one measured run of `python -m bench
// --workloads lab`) as one SVG bar chart per figure, one bar per transport. No library: the
// demo works offline.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  // What each chart shows: the lab.json key under "fanout", its title, a note, its unit.
  const CHARTS = [
    ["messages_per_s", "Messages delivered per second",
      "higher is better; ≥: the load generator was the limit, the server can do more", "/s"],
    ["p50_ms", "Latency, publish to receive (median)", "lower is better", " ms"],
    ["requests_per_msg", "HTTP requests per delivered message",
      "after the connection is set up; lower is better", ""],
    ["bytes_per_msg", "Bytes on the wire per delivered message",
      "headers and framing included, for a 64-byte payload", " B"],
    ["p99_ms", "Latency, 99th percentile", "lower is better", " ms"],
    ["cpu_ms_per_1000", "Server CPU per 1,000 delivered messages", "lower is better", " ms"],
  ];
  // Transports that need an HTTP request for each batch of messages they deliver.
  const PER_REQUEST = new Set(["longpoll", "polling"]);

  function format(value, unit) {
    if (value === undefined || value === null) return "–";
    let text;
    if (value >= 10000) text = Math.round(value).toLocaleString("en");
    else if (value >= 100 || Number.isInteger(value)) text = String(Math.round(value));
    else if (value >= 10) text = value.toFixed(1);
    else text = value.toPrecision(2);
    return text + unit;
  }

  function svg(name, attributes, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  let measure = null;
  function textWidth(text) {
    if (measure === null) {
      measure = document.createElement("canvas").getContext("2d");
      measure.font = `12px ${getComputedStyle(document.body).fontFamily}`;
    }
    return measure.measureText(text).width;
  }

  function barClass(row) {
    if (!row.valid) return "bar invalid";
    return PER_REQUEST.has(row.transport) ? "bar request" : "bar";
  }

  function chart(rows, [key, title, note, unit], width) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.dataset.testid = "chart";
    figure.dataset.metric = key;
    const caption = document.createElement("figcaption");
    caption.textContent = title;
    const small = document.createElement("span");
    small.className = "note";
    small.textContent = note;
    caption.append(small);
    figure.append(caption);

    // Drawn at the width it is shown at, so that its text keeps its size on a phone; the
    // label column is as wide as the longest transport name.
    const labelWidth = Math.min(width * 0.5, Math.max(...rows.map((row) => textWidth(row.name))) + 14);
    const valueWidth = 100, barHeight = 18, gap = 8;
    const plot = width - labelWidth - valueWidth;
    const height = rows.length * (barHeight + gap) + gap;
    const values = rows.map((row) => (row.fanout || {})[key]);
    const top = Math.max(...values.filter((v) => typeof v === "number"), 0) || 1;
    const drawing = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "img",
      "aria-label": title,
    });
    drawing.append(svg("line", {
      class: "axis", x1: labelWidth, x2: labelWidth, y1: 0, y2: height,
    }));
    rows.forEach((row, index) => {
      const y = gap + index * (barHeight + gap);
      const value = values[index];
      const length = typeof value === "number" ? Math.max((value / top) * plot, value ? 1 : 0) : 0;
      drawing.append(svg("text", {
        class: "label", x: labelWidth - 8, y: y + barHeight / 2, "text-anchor": "end",
        "dominant-baseline": "central",
      }, row.name));
      const bar = svg("rect", {
        class: barClass(row), x: labelWidth, y, width: length.toFixed(1), height: barHeight, rx: 3,
        "data-transport": row.name, "data-value": value === undefined ? "" : String(value),
      });
      bar.append(svg("title", {}, `${row.name}: ${format(value, unit)}`));
      drawing.append(bar);
      // A rate measured while the load generator was at its limit is a lower bound.
      const atLeast = key === "messages_per_s" && row.loadgen_bound ? "≥ " : "";
      drawing.append(svg("text", {
        class: "value", x: labelWidth + length + 6, y: y + barHeight / 2,
        "dominant-baseline": "central",
      }, atLeast + format(value, unit)));
    });
    figure.append(drawing);
    return figure;
  }

  // The harness's verdict in a sentence: a load generator at its limit does not make a
  // delivery wrong, only its rate a lower bound.
  function note(row) {
    if (!row.valid) return row.status || "flagged";
    if (row.loadgen_bound) return "the load generator was at its limit: the rate is a lower bound";
    return row.status === "ok" ? "" : row.status || "";
  }

  function table(data) {
    const node = document.getElementById("figures");
    const head = ["transport", "messages/s", "p50 ms", "p99 ms", "HTTP requests / msg",
      "bytes / msg", "server CPU ms / 1000 msgs", "echo round trips/s", "echo bytes / msg",
      "harness note"];
    const thead = node.createTHead().insertRow();
    for (const title of head) {
      const th = document.createElement("th");
      th.textContent = title;
      thead.append(th);
    }
    const body = node.createTBody();
    for (const row of data.transports) {
      const f = row.fanout || {}, e = row.echo || {};
      const cells = [row.name + (row.valid ? "" : " (flagged)"),
        (row.loadgen_bound ? "≥ " : "") + format(f.messages_per_s, ""),
        format(f.p50_ms, ""), format(f.p99_ms, ""), format(f.requests_per_msg, ""),
        format(f.bytes_per_msg, ""), format(f.cpu_ms_per_1000, ""),
        format(e.round_trips_per_s, ""), format(e.bytes_per_msg, ""), note(row)];
      const tr = body.insertRow();
      tr.dataset.testid = "figures-row";
      cells.forEach((text, i) => {
        const cell = tr.insertCell();
        cell.textContent = text;
        cell.dataset.label = head[i]; // a phone shows each row as a card of labelled values
      });
    }
  }

  function find(data, name) {
    return data.transports.find((row) => row.name.startsWith(name)) || null;
  }

  // Put this run's own numbers into the three points the page makes.
  function points(data) {
    const ws = find(data, "websocket (raw)");
    const polling = find(data, "polling");
    const longpoll = find(data, "longpoll");
    const payload = data.payload_bytes;
    if (ws && ws.fanout && ws.fanout.bytes_per_msg !== undefined) {
      const framing = ws.fanout.bytes_per_msg - payload;
      append("point-websocket", ` Measured here: ${format(ws.fanout.bytes_per_msg, "")} bytes ` +
        `per ${payload}-byte message over a raw WebSocket, ${format(framing, "")} of them framing.`);
    }
    if (longpoll && longpoll.fanout && longpoll.fanout.requests_per_msg) {
      const per = 1 / longpoll.fanout.requests_per_msg;
      append("point-longpoll", ` Measured here: one request per ${format(per, "")} messages, ` +
        `${format(longpoll.fanout.bytes_per_msg, "")} bytes per message on the wire and a ` +
        `median latency of ${format(longpoll.fanout.p50_ms, " ms")}.`);
    }
    if (polling && polling.fanout && ws && ws.fanout) {
      append("point-polling", ` Measured here (${polling.name}): a median latency of ` +
        `${format(polling.fanout.p50_ms, " ms")} against ` +
        `${format(ws.fanout.p50_ms, " ms")} over a WebSocket, and ` +
        `${format(polling.fanout.cpu_ms_per_1000, " ms")} of server CPU per 1,000 ` +
        `messages against ${format(ws.fanout.cpu_ms_per_1000, " ms")}.`);
    }
  }

  function append(id, text) {
    const strong = document.createElement("strong");
    strong.textContent = text;
    document.getElementById(id).append(strong);
  }

  function provenance(data) {
    const versions = Object.entries(data.versions || {})
      .filter(([, version]) => version !== "not installed")
      // "Python 3.11.7" names itself; "websockets": "17.4" does not.
      .map(([name, version]) => (String(version).toLowerCase().startsWith(name.toLowerCase())
        ? String(version) : `${name} ${version}`)).join(", ");
    const machine = data.machine || {};
    const node = document.getElementById("provenance");
    const command = document.createElement("code");
    command.textContent = data.command;
    node.replaceChildren(`Measured ${data.date} with `, command,
      `: ${data.runs_per_figure} runs per figure (medians), ${data.duration_s} s each, fan-out ` +
      `to ${data.fanout_subscribers} subscribers, echo over ${data.echo_connections} ` +
      `connections. Machine: ${machine.cpu || "?"}, ${machine.cores || "?"} cores, Linux ` +
      `${machine.kernel || "?"}; ${machine.pinning || ""}. Versions: ${versions}.`);
  }

  function drawCharts(data) {
    const charts = document.getElementById("charts");
    // The charts' column: half the grid on a wide screen, all of it on a narrow one.
    const wide = window.matchMedia("(min-width: 761px)").matches;
    const inner = charts.clientWidth - (wide ? 14 : 0);
    const width = Math.max(280, Math.floor((wide ? inner / 2 : inner) - 30));
    charts.replaceChildren(...CHARTS.map((spec) => chart(data.transports, spec, width)));
    charts.setAttribute("aria-busy", "false");
    charts.dataset.state = "ready";
  }

  function draw(data) {
    drawCharts(data);
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => drawCharts(data), 150);
    });
    document.getElementById("subscribers").textContent =
      data.fanout_subscribers.toLocaleString("en");
    document.getElementById("payload").textContent = String(data.payload_bytes);
    table(data);
    points(data);
    provenance(data);
  }

  function fail(error) {
    const charts = document.getElementById("charts");
    const message = document.createElement("p");
    message.className = "error";
    message.textContent = `Could not load /static/lab.json: ${error.message}`;
    charts.replaceChildren(message);
    charts.setAttribute("aria-busy", "false");
    charts.dataset.state = "error";
  }

  fetch("/static/lab.json", { cache: "no-cache" })
    .then((response) => {
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      return response.json();
    })
    .then(draw)
    .catch(fail);
})();
