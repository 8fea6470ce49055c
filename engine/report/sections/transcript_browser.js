// The report's transcript browser (engine/report/transcripts_browser.py). Reads the inline JSON
// index and, when a trial is opened, decompresses the gzip chunk holding it. Every string from the
// data is set with textContent: nothing from the study is ever parsed as markup.
(function () {
  "use strict";
  var settings = JSON.parse(document.currentScript.previousElementSibling.textContent);
  var key = settings.key;
  var root = document.getElementById(key);
  var index = JSON.parse(document.getElementById(key + "-index").textContent);
  var rows = index.rows; // [model, condition, outcome, seed, calls, chunk, position in chunk]
  var COLUMN = { model: 0, condition: 1, outcome: 2 };
  var LABELS = { model: index.models, condition: index.conditions, outcome: index.outcomes };
  var state = { model: -1, condition: -1, outcome: -1, page: 0, open: -1 };
  var chunks = {};
  var parsed = new Promise(function (resolve) {
    if (document.readyState !== "loading") resolve();
    else document.addEventListener("DOMContentLoaded", resolve);
  });

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function filterSelect(name) {
    var counts = LABELS[name].map(function () { return 0; });
    rows.forEach(function (r) { counts[r[COLUMN[name]]] += 1; });
    var label = el("label", "", name + " ");
    var select = el("select");
    select.name = name;
    select.setAttribute("data-filter", name);
    var all = el("option", "", "all (" + rows.length + ")");
    all.value = "-1";
    select.appendChild(all);
    LABELS[name].forEach(function (text, i) {
      var option = el("option", "", text + " (" + counts[i] + ")");
      option.value = String(i);
      select.appendChild(option);
    });
    select.addEventListener("change", function () {
      state[name] = Number(select.value);
      state.page = 0;
      draw();
    });
    label.appendChild(select);
    return label;
  }

  function matching() {
    var out = [];
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if ((state.model < 0 || r[0] === state.model) && (state.condition < 0 || r[1] === state.condition) &&
          (state.outcome < 0 || r[2] === state.outcome)) out.push(i);
    }
    return out;
  }

  var count = el("p", "tb-count");
  var table = el("table", "tb-table");
  var body = el("tbody");
  var pager = el("div", "tb-controls tb-pager");
  var previous = el("button", "tb-previous", "Previous");
  var next = el("button", "tb-next", "Next");
  var pageText = el("span", "tb-page");
  var detail = el("div", "tb-detail");
  detail.hidden = true;

  function header() {
    var head = el("thead");
    var tr = el("tr");
    ["#", "Model", "Condition", "Seed", "Outcome", "Calls"].forEach(function (h) { tr.appendChild(el("th", "", h)); });
    head.appendChild(tr);
    return head;
  }

  function draw() {
    var shown = matching();
    var size = settings.pageSize;
    var pages = Math.max(1, Math.ceil(shown.length / size));
    state.page = Math.min(state.page, pages - 1);
    var first = state.page * size;
    var page = shown.slice(first, first + size);
    count.textContent = shown.length + " of " + rows.length + " " + settings.unit[1] + " match" +
      (page.length ? "; showing " + (first + 1) + "-" + (first + page.length) : "") + ".";
    count.setAttribute("data-matching", String(shown.length));
    body.replaceChildren();
    page.forEach(function (i) {
      var r = rows[i];
      var tr = el("tr");
      tr.tabIndex = 0;
      tr.setAttribute("data-trial", String(i));
      if (i === state.open) tr.className = "tb-open";
      [String(i + 1), index.models[r[0]], index.conditions[r[1]], String(r[3]), index.outcomes[r[2]],
        String(r[4])].forEach(function (text) { tr.appendChild(el("td", "", text)); });
      tr.addEventListener("click", function () { open(i); });
      tr.addEventListener("keydown", function (event) { if (event.key === "Enter") open(i); });
      body.appendChild(tr);
    });
    pageText.textContent = "page " + (state.page + 1) + " of " + pages;
    previous.disabled = state.page === 0;
    next.disabled = state.page >= pages - 1;
  }

  function decode(text) {
    var binary = atob(text.trim());
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(JSON.parse);
  }

  function chunk(n) {
    if (!chunks[n]) {
      chunks[n] = parsed.then(function () {
        var all = (window.transcriptChunks || {})[key];
        if (!all) throw new Error("the transcripts are missing from this page");
        return decode(all[n]);
      });
    }
    return chunks[n];
  }

  function text(cls, value) {
    return el("pre", "tb-text" + (cls ? " " + cls : ""), value);
  }

  function showTrial(i, data) {
    var r = rows[i];
    var s = data.s;
    var trial = data.t[r[6]];
    detail.replaceChildren();
    var unit = settings.unit[0].charAt(0).toUpperCase() + settings.unit[0].slice(1);
    detail.appendChild(el("p", "tb-call-title", unit + " " + (i + 1) + ": " + index.models[r[0]] + ", " +
      index.conditions[r[1]] + ", seed " + r[3] + ", outcome " + index.outcomes[r[2]] + " (id " + trial[0] + ")"));
    if (trial[1] >= 0) detail.appendChild(el("p", "tb-error", "Error: " + s[trial[1]]));
    if (!trial[2].length) detail.appendChild(el("p", "", "This " + settings.unit[0] + " made no model call."));
    var before = [];
    trial[2].forEach(function (call, k) {
      var box = el("div", "tb-call");
      var title = "Call " + (k + 1) + ": " + s[call[0]] + ", " + s[call[1]];
      if (s[call[4]]) title += " (parse: " + s[call[4]] + ")";
      box.appendChild(el("div", "tb-call-title", title));
      var turns = call[2];
      for (var m = 0; m < turns.length; m += 2) {
        var role = s[turns[m]];
        var content = s[turns[m + 1]];
        if (k > 0 && before[m + 1] === turns[m + 1]) {
          // Sent on the previous call too (a system prompt, say): folded, one click away.
          var folded = el("details");
          folded.appendChild(el("summary", "tb-role", role + " (as in call " + k + ")"));
          folded.appendChild(text("", content));
          box.appendChild(folded);
        } else {
          box.appendChild(el("div", "tb-role", role));
          box.appendChild(text("", content));
        }
      }
      before = turns;
      box.appendChild(el("div", "tb-role", "reply"));
      if (call[3] >= 0) box.appendChild(text("tb-reply", s[call[3]]));
      else box.appendChild(el("p", "tb-error", "No reply."));
      if (call[5] >= 0) box.appendChild(el("p", "tb-error", "Call error: " + s[call[5]]));
      detail.appendChild(box);
    });
    detail.setAttribute("data-open", String(i));
  }

  function open(i) {
    state.open = i;
    draw();
    detail.hidden = false;
    detail.removeAttribute("data-open");
    detail.replaceChildren(el("p", "", "Loading..."));
    if (typeof DecompressionStream === "undefined") {
      detail.replaceChildren(el("p", "tb-error", "This browser cannot decompress the transcripts " +
        "(DecompressionStream: Chrome 80, Firefox 113, Safari 16.4 or later)."));
      return;
    }
    chunk(rows[i][5]).then(function (data) {
      if (state.open === i) showTrial(i, data);
    }, function (error) {
      detail.replaceChildren(el("p", "tb-error", "Could not read the transcript: " + error));
    });
    detail.scrollIntoView({ block: "nearest" });
  }

  previous.addEventListener("click", function () { state.page -= 1; draw(); });
  next.addEventListener("click", function () { state.page += 1; draw(); });
  var controls = el("div", "tb-controls");
  ["model", "condition", "outcome"].forEach(function (name) { controls.appendChild(filterSelect(name)); });
  table.appendChild(header());
  table.appendChild(body);
  pager.append(previous, pageText, next);
  root.replaceChildren(controls, count, table, pager, detail);
  draw();
  root.setAttribute("data-ready-ms", String(performance.now()));
})();
