// swarm Mission Control: renders the live view of a `swarm run --web` run.
//
// Data comes only from the same origin: Server-Sent Events on /events (event "view"),
// with /view.json as a one-off fallback when no event has arrived yet. Every string from
// the server is inserted with textContent or setAttribute, never as markup.
'use strict';

(function () {
  const SVGNS = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- state

  const state = {
    view: null, // latest view (its own `series` is not used after merging)
    series: [], // merged samples, sorted by `second`, one per second
    runId: null,
    expectWhole: true, // the next event after (re)connecting carries the whole run
    es: null,
    gotView: false,
    dirty: false,
    verdictKey: '',
  };

  // ---------------------------------------------------------------- series merge

  function validSample(s) {
    return s !== null && typeof s === 'object' && Number.isFinite(Number(s.second));
  }

  // Sorted by second, one sample per second (the last one given wins).
  function sortedUnique(samples) {
    const list = samples.filter(validSample).slice();
    list.sort((a, b) => Number(a.second) - Number(b.second));
    const out = [];
    for (const s of list) {
      if (out.length && Number(out[out.length - 1].second) === Number(s.second)) {
        out[out.length - 1] = s;
      } else {
        out.push(s);
      }
    }
    return out;
  }

  // Merge `incoming` into the sorted `held` array in place: replace samples with the
  // same second, insert new ones, keep the order. Only the tail from the first incoming
  // second onward is touched, so the usual update (the last few seconds) is cheap.
  function mergeSeries(held, incoming) {
    const inc = sortedUnique(incoming);
    if (!inc.length) return held;
    const first = Number(inc[0].second);
    // First index whose second >= first (binary search).
    let lo = 0;
    let hi = held.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (Number(held[mid].second) < first) lo = mid + 1;
      else hi = mid;
    }
    const tail = held.splice(lo);
    let i = 0;
    let j = 0;
    while (i < tail.length || j < inc.length) {
      if (j >= inc.length) {
        held.push(tail[i++]);
      } else if (i >= tail.length) {
        held.push(inc[j++]);
      } else {
        const a = Number(tail[i].second);
        const b = Number(inc[j].second);
        if (a < b) held.push(tail[i++]);
        else if (b < a) held.push(inc[j++]);
        else {
          held.push(inc[j++]);
          i++;
        }
      }
    }
    return held;
  }

  function onView(v, whole) {
    if (!v || typeof v !== 'object') return;
    const incoming = Array.isArray(v.series) ? v.series : [];
    const newRun = state.runId !== null && v.run_id != null && v.run_id !== state.runId;
    if (whole || state.expectWhole || newRun) {
      state.series = sortedUnique(incoming);
      state.expectWhole = false;
    } else {
      mergeSeries(state.series, incoming);
    }
    if (v.run_id != null) state.runId = v.run_id;
    state.view = v;
    state.gotView = true;
    schedule();
  }

  // ---------------------------------------------------------------- connection

  function setConn(kind, text) {
    const c = $('conn');
    c.className = 'conn ' + kind;
    c.textContent = text;
  }

  function connect() {
    if (typeof EventSource === 'undefined') {
      setConn('closed', 'no EventSource: polling');
      poll();
      return;
    }
    const es = new EventSource('/events');
    state.es = es;
    state.expectWhole = true;
    setConn('connecting', 'connecting');
    es.addEventListener('open', () => {
      state.expectWhole = true;
      setConn('live', 'live');
    });
    es.addEventListener('view', (e) => {
      let v;
      try {
        v = JSON.parse(e.data);
      } catch (err) {
        return;
      }
      setConn('live', 'live');
      onView(v, false);
    });
    es.addEventListener('error', () => {
      // EventSource reconnects by itself; the first event after it is whole again.
      state.expectWhole = true;
      const ended = state.view && state.view.phase === 'done';
      if (es.readyState === 2) {
        // CLOSED: the browser gave up (bad status or type); try again ourselves.
        setConn('closed', 'disconnected, retrying');
        es.close();
        setTimeout(connect, 3000);
      } else if (ended) {
        // The run is over; the server may stop serving. What is shown is the final view.
        setConn('ended', 'run ended · stream closed');
      } else {
        setConn('reconnecting', 'reconnecting');
      }
    });
  }

  function fetchWhole() {
    return fetch('/view.json', { cache: 'no-store' })
      .then((r) => (r.ok ? r.json() : null))
      .then((v) => {
        if (v) onView(v, true);
      })
      .catch(() => {});
  }

  function poll() {
    fetchWhole().then(() => setTimeout(poll, 1000));
  }

  // ---------------------------------------------------------------- formatting

  function num(x) {
    const n = Number(x);
    return x === null || x === undefined || x === '' || !Number.isFinite(n) ? null : n;
  }

  // Put an integer into `el` as digit groups: the text stays the plain integer
  // ("1000000"), the gaps between groups come from CSS (.dg + .dg).
  function setFigure(el, value) {
    if (!el) return;
    const n = num(value);
    if (n === null) {
      delete el.dataset.value;
      if (el.textContent !== '—') el.textContent = '—';
      return;
    }
    const digits = String(Math.abs(Math.round(n)));
    const key = (n < 0 ? '-' : '') + digits;
    if (el.dataset.value === key && el.firstChild) return;
    el.dataset.value = key;
    const groups = [];
    let head = digits.length % 3 || 3;
    groups.push(digits.slice(0, head));
    for (; head < digits.length; head += 3) groups.push(digits.slice(head, head + 3));
    if (n < 0) groups[0] = '-' + groups[0];
    el.replaceChildren();
    if (groups.length === 1) {
      el.textContent = groups[0];
      return;
    }
    for (const g of groups) {
      const s = document.createElement('span');
      s.className = 'dg';
      s.textContent = g;
      el.appendChild(s);
    }
  }

  function compact(n) {
    n = num(n);
    if (n === null) return '—';
    const a = Math.abs(n);
    const trim = (x, d) => x.toFixed(d).replace(/\.0+$/, '').replace(/(\.\d*?)0+$/, '$1');
    // Pick the unit after rounding, so 999,661 reads 1M, not 1000k.
    const units = [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
    for (const [u, suffix] of units) {
      if (a >= u * 0.9995) {
        const x = n / u;
        return trim(x, Math.abs(x) >= 9.95 ? 0 : 1) + suffix;
      }
    }
    if (a >= 1 || a === 0) return trim(n, a >= 9.95 ? 0 : 1);
    return trim(n, 2);
  }

  function fmtMs(x) {
    const v = num(x);
    if (v === null) return '—';
    if (v < 1) return v.toFixed(2);
    if (v < 10) return v.toFixed(2);
    if (v < 100) return v.toFixed(1);
    return v.toFixed(0);
  }

  function fmtElapsed(x) {
    const s = num(x);
    if (s === null) return '—';
    if (s < 60) return s.toFixed(1) + ' s';
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    const ss = (sec < 10 ? '0' : '') + sec.toFixed(1);
    return h > 0 ? h + ':' + String(m).padStart(2, '0') + ':' + ss : m + ':' + ss;
  }

  function fmtAxisSeconds(s, span) {
    if (span >= 180) {
      const m = Math.floor(s / 60);
      const r = Math.round(s % 60);
      return m + ':' + String(r).padStart(2, '0');
    }
    return (Math.round(s * 10) / 10) + 's';
  }

  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }

  function stateClass(st) {
    const s = String(st || '').toUpperCase();
    if (s === 'UP') return 'up';
    if (s.startsWith('DOWN')) return 'down';
    if (s.startsWith('SLOW')) return 'slow';
    return 'other';
  }

  function modeClass(mode) {
    const m = String(mode || '').toLowerCase();
    if (m === 'latency' || m === 'slow') return 'slow';
    if (m === 'command') return 'cmd';
    return 'down';
  }

  // ---------------------------------------------------------------- svg helpers

  function S(tag, attrs, parent) {
    const e = document.createElementNS(SVGNS, tag);
    if (attrs) {
      for (const k of Object.keys(attrs)) {
        const v = attrs[k];
        if (v !== null && v !== undefined) e.setAttribute(k, String(v));
      }
    }
    if (parent) parent.appendChild(e);
    return e;
  }

  function T(parent, x, y, text, attrs) {
    const t = S('text', Object.assign({ x: r1(x), y: r1(y) }, attrs || {}), parent);
    t.textContent = text;
    return t;
  }

  function r1(x) {
    return Math.round(x * 10) / 10;
  }

  function niceStep(raw) {
    if (!(raw > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    const m = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
    return m * p;
  }

  // Linear scale 0..max with about `n` ticks.
  function linearTicks(max, n, integer) {
    const top = max > 0 ? max : 1;
    let step = niceStep(top / n);
    if (integer) step = Math.max(1, Math.floor(step)); // counts: 0, 1, 2, never 0.25 or 2.5
    const end = Math.ceil(top / step - 1e-9) * step;
    const ticks = [];
    for (let v = 0; v <= end + step / 2; v += step) ticks.push(v);
    return { max: end, ticks };
  }

  function logTicks(min, max) {
    let lo = Math.floor(Math.log10(min));
    let hi = Math.ceil(Math.log10(max));
    if (hi <= lo) hi = lo + 1;
    const ticks = [];
    for (let e = lo; e <= hi; e++) {
      ticks.push(Math.pow(10, e));
      if (hi - lo <= 2 && e < hi) {
        ticks.push(2 * Math.pow(10, e));
        ticks.push(5 * Math.pow(10, e));
      }
    }
    ticks.sort((a, b) => a - b);
    return { lo: Math.pow(10, lo), hi: Math.pow(10, hi), ticks };
  }

  function fontPx(el) {
    return parseFloat(getComputedStyle(el).fontSize) || 14;
  }

  function textWidth(text, fs) {
    return String(text).length * fs * 0.56;
  }

  // Points of one line, thinned to at most one (the largest) per pixel column.
  function linePoints(series, get, xOf, yOf) {
    const pts = [];
    let lastCol = null;
    for (const s of series) {
      const v = get(s);
      if (v === null) {
        if (pts.length && pts[pts.length - 1] !== null) pts.push(null);
        lastCol = null;
        continue;
      }
      const x = xOf(Number(s.second));
      const col = Math.round(x);
      const y = yOf(v);
      const prev = pts.length ? pts[pts.length - 1] : null;
      if (prev !== null && lastCol === col) {
        if (y < prev[1]) prev[1] = y; // keep the peak (smaller y is higher)
      } else {
        pts.push([x, y]);
      }
      lastCol = col;
    }
    return pts;
  }

  function pathOf(pts) {
    let d = '';
    let pen = false;
    for (const p of pts) {
      if (p === null) {
        pen = false;
        continue;
      }
      d += (pen ? 'L' : 'M') + r1(p[0]) + ' ' + r1(p[1]);
      pen = true;
    }
    return d;
  }

  function areaOf(pts, base) {
    let d = '';
    let run = [];
    const flush = () => {
      if (run.length) {
        d += 'M' + r1(run[0][0]) + ' ' + r1(base);
        for (const p of run) d += 'L' + r1(p[0]) + ' ' + r1(p[1]);
        d += 'L' + r1(run[run.length - 1][0]) + ' ' + r1(base) + 'Z';
      }
      run = [];
    };
    for (const p of pts) {
      if (p === null) flush();
      else run.push(p);
    }
    flush();
    return d;
  }

  // ---------------------------------------------------------------- time charts

  // Fault windows in seconds: open faults run to "now".
  function faultWindows(v) {
    const now = num(v.elapsed_s) || 0;
    const out = [];
    for (const f of Array.isArray(v.faults) ? v.faults : []) {
      if (!f) continue;
      const a = num(f.started_ms);
      if (a === null) continue;
      const b = num(f.healed_ms);
      const from = a / 1000;
      const to = b === null ? Math.max(now, from) : b / 1000;
      out.push({
        region: f.region == null ? '' : String(f.region),
        mode: f.mode == null ? '' : String(f.mode),
        from,
        to,
        open: b === null,
      });
    }
    return out;
  }

  function timeDomain(v, series) {
    const last = series.length ? Number(series[series.length - 1].second) : 0;
    const el = num(v.elapsed_s) || 0;
    return Math.max(10, last, el);
  }

  // Draws a stack of panes sharing the time axis into `host`.
  // cfg = { xMax, panes: [{ weight, label, log, lines: [{ get, color, area }] }],
  //         bands, bandMarks (true: the bands are the .fault elements tests read),
  //         lanes: [{ name, runs: [{ from, to, cls }] }] }
  function drawTimeChart(host, series, cfg) {
    const W = Math.floor(host.clientWidth);
    const H = Math.floor(host.clientHeight);
    if (W < 40 || H < 30) {
      host.replaceChildren();
      return;
    }
    const fs = fontPx(host);
    const lanes = cfg.lanes || [];
    const bands = cfg.bands || [];
    const laneH = lanes.length ? Math.max(6, Math.min(fs * 0.85, H * 0.06)) : 0;
    const laneGap = Math.max(2, laneH * 0.25);
    const lanesBlock = lanes.length ? fs * 0.35 + lanes.length * (laneH + laneGap) : 0;

    // Charts given the same names share a left margin, so their time axes line up.
    let ml = fs * 3.4;
    for (const name of cfg.marginNames || []) ml = Math.max(ml, textWidth(name, fs * 0.85) + fs * 0.6);
    ml = Math.min(ml, W * 0.22);
    const mr = fs * 0.8;
    const mb = fs * 1.45 + lanesBlock;

    const xMax = cfg.xMax;
    const pw0 = W - ml - mr;
    const xOf = (s) => ml + (Math.max(0, Math.min(xMax, s)) / xMax) * pw0;

    // Band labels go in rows above the plot, so they never cover the data.
    const labelFs = fs * 0.9;
    const rowsEnd = [];
    const placed = [];
    if (cfg.bandMarks) {
      for (const b of bands) {
        const x0 = xOf(b.from);
        const text = (b.region + ' ' + b.mode).trim();
        const w = textWidth(text, labelFs);
        let lx = Math.min(x0 + 2, W - mr - w);
        lx = Math.max(ml, lx);
        let row = 0;
        while (row < rowsEnd.length && rowsEnd[row] > lx - fs * 0.4) row++;
        if (row >= 3) row = rowsEnd.indexOf(Math.min.apply(null, rowsEnd));
        rowsEnd[row] = lx + w;
        placed.push({ b, lx, row, text });
      }
    }
    const labelRows = rowsEnd.length;
    const mt = labelRows ? labelRows * labelFs * 1.2 + fs * 0.25 : fs * 0.5;

    const plotTop = mt;
    const plotBottom = H - mb;
    const panes = cfg.panes;
    const gap = fs * 0.9;
    const totalWeight = panes.reduce((a, p) => a + p.weight, 0);
    const avail = plotBottom - plotTop - gap * (panes.length - 1);
    if (avail < 10) {
      host.replaceChildren();
      return;
    }

    const svg = S('svg', { width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, 'font-size': r1(fs) });
    const gBands = S('g', { class: 'bands' }, svg);
    const gGrid = S('g', { class: 'axis' }, svg);
    const gData = S('g', { class: 'data' }, svg);
    const gLabels = S('g', { class: 'labels' }, svg);

    // Panes.
    let top = plotTop;
    for (const pane of panes) {
      const ph = (avail * pane.weight) / totalWeight;
      const y0 = top + ph; // baseline
      let yOf;
      let ticks;
      if (pane.log) {
        let mn = Infinity;
        let mx = 0;
        for (const s of series) {
          for (const ln of pane.lines) {
            const v = ln.get(s);
            if (v !== null && v > 0) {
              mn = Math.min(mn, v);
              mx = Math.max(mx, v);
            }
          }
        }
        if (!(mx > 0)) {
          mn = 0.1;
          mx = 10;
        }
        const lt = logTicks(mn, mx);
        const l0 = Math.log10(lt.lo);
        const l1 = Math.log10(lt.hi);
        yOf = (v) => y0 - ((Math.log10(Math.max(v, lt.lo)) - l0) / (l1 - l0)) * ph;
        ticks = lt.ticks;
      } else {
        let mx = 0;
        for (const s of series) {
          for (const ln of pane.lines) {
            const v = ln.get(s);
            if (v !== null && v > mx) mx = v;
          }
        }
        const nt = ph > fs * 6 ? 4 : ph > fs * 3 ? 2 : 1;
        const lt = linearTicks(mx, nt, pane.integer !== false);
        yOf = (v) => y0 - (Math.max(0, v) / lt.max) * ph;
        ticks = lt.ticks;
      }
      // Grid and y labels (skip labels that would collide).
      let lastLabelY = Infinity;
      for (const t of ticks) {
        const y = yOf(t);
        if (y < top - 0.5 || y > y0 + 0.5) continue;
        S('line', { class: t === 0 || (pane.log && t === ticks[0]) ? 'baseline' : 'gridline', x1: r1(ml), x2: r1(W - mr), y1: r1(y), y2: r1(y) }, gGrid);
        if (lastLabelY - y >= fs * 0.95) {
          T(gGrid, ml - fs * 0.35, y + fs * 0.33, compact(t), { 'text-anchor': 'end', class: 'tick-label' });
          lastLabelY = y;
        }
      }
      if (pane.label) {
        T(gLabels, ml + fs * 0.4, top + fs * 0.95, pane.label, { class: 'pane-label', 'font-size': r1(fs * 0.9) });
      }
      for (const ln of pane.lines) {
        const pts = linePoints(series, ln.get, xOf, yOf);
        if (!pts.length) continue;
        if (ln.area) {
          S('path', { class: 'area', d: areaOf(pts, y0), fill: ln.color, 'fill-opacity': 0.18 }, gData);
        }
        S('path', { class: 'line', d: pathOf(pts), stroke: ln.color, 'stroke-width': ln.width || Math.max(1.5, fs * 0.13) }, gData);
        // A sample with no neighbour (the first second, or after a gap) is a dot.
        pts.forEach((p, k) => {
          if (p !== null && !pts[k - 1] && !pts[k + 1]) {
            S('circle', { cx: r1(p[0]), cy: r1(p[1]), r: r1(Math.max(2.5, fs * 0.22)), fill: ln.color }, gData);
          }
        });
      }
      top = y0 + gap;
    }

    // Region lanes under the panes: one coloured strip per region over time.
    const lanesTop = plotBottom + fs * 0.35;
    lanes.forEach((ln, i) => {
      const y = lanesTop + i * (laneH + laneGap);
      T(gLabels, ml - fs * 0.35, y + laneH * 0.85, ln.name, { 'text-anchor': 'end', class: 'lane-label', 'font-size': r1(Math.min(fs * 0.85, laneH * 1.15)) });
      for (const run of ln.runs) {
        const x0 = xOf(run.from);
        const x1 = xOf(run.to);
        S('rect', { class: 'lane ' + run.cls, x: r1(x0), y: r1(y), width: r1(Math.max(1, x1 - x0)), height: r1(laneH) }, gData);
      }
    });

    // Time axis.
    const xAxisY = H - mb + lanesBlock;
    const approx = Math.max(2, Math.floor(pw0 / (fs * 5)));
    let step = niceStep(xMax / approx);
    if (xMax >= 180) step = Math.max(60, Math.ceil(step / 60) * 60);
    for (let s = 0; s <= xMax + 1e-9; s += step) {
      const x = xOf(s);
      S('line', { class: 'gridline', x1: r1(x), x2: r1(x), y1: r1(plotTop), y2: r1(plotBottom), 'stroke-opacity': 0.5 }, gGrid);
      const label = fmtAxisSeconds(s, xMax);
      const half = textWidth(label, fs) / 2;
      const anchor = s === 0 ? 'start' : x + half > W - 2 ? 'end' : 'middle';
      T(gGrid, anchor === 'end' ? W - 2 : x, xAxisY + fs * 1.1, label, { 'text-anchor': anchor, class: 'tick-label' });
    }

    // Fault windows: a shaded band each, over all panes and lanes.
    const bandBottom = lanes.length ? lanesTop + lanes.length * (laneH + laneGap) : plotBottom;
    if (cfg.bandMarks) {
      for (const p of placed) {
        const b = p.b;
        const x0 = xOf(b.from);
        const x1 = Math.max(x0 + 2, xOf(b.to));
        const g = S('g', {
          class: 'fault ' + modeClass(b.mode) + (b.open ? ' open' : ''),
          'data-region': b.region,
          'data-mode': b.mode,
          'data-from-s': +b.from.toFixed(3),
          'data-to-s': +b.to.toFixed(3),
          'data-open': b.open ? 'true' : 'false',
        }, gBands);
        const ly = p.row * labelFs * 1.2;
        S('rect', { x: r1(x0), y: r1(ly + labelFs * 1.15), width: r1(x1 - x0), height: r1(bandBottom - ly - labelFs * 1.15) }, g);
        T(g, p.lx, ly + labelFs * 0.95, p.text, { 'font-size': r1(labelFs) });
      }
    } else {
      for (const b of bands) {
        const x0 = xOf(b.from);
        const x1 = Math.max(x0 + 2, xOf(b.to));
        S('rect', { class: 'fault-shade ' + modeClass(b.mode), x: r1(x0), y: r1(plotTop), width: r1(x1 - x0), height: r1(plotBottom - plotTop) }, gBands);
      }
    }

    if (!series.length) {
      T(gLabels, ml + pw0 / 2, (plotTop + plotBottom) / 2, 'waiting for samples…', { 'text-anchor': 'middle', class: 'empty-note' });
    }
    host.replaceChildren(svg);
  }

  // Per-region runs of equal state from the samples' `regions` arrays.
  function regionLanes(v, series) {
    const regions = Array.isArray(v.regions) ? v.regions : [];
    let count = regions.length;
    for (const s of series) if (Array.isArray(s.regions)) count = Math.max(count, s.regions.length);
    const lanes = [];
    for (let i = 0; i < count; i++) {
      const name = regions[i] && regions[i].name != null ? String(regions[i].name) : 'region ' + (i + 1);
      const runs = [];
      let prevSecond = null;
      for (const s of series) {
        const sec = Number(s.second);
        const from = prevSecond === null ? Math.max(0, sec - 1) : prevSecond;
        prevSecond = sec;
        const st = Array.isArray(s.regions) ? s.regions[i] : undefined;
        const cls = st === undefined || st === null ? 'unknown' : stateClass(st) === 'other' ? 'unknown' : stateClass(st);
        const last = runs[runs.length - 1];
        if (last && last.cls === cls && Math.abs(last.to - from) < 1e-9) last.to = sec;
        else runs.push({ from, to: sec, cls });
      }
      lanes.push({ name, runs });
    }
    return lanes;
  }

  const getN = (key) => (s) => num(s[key]);
  const getMs = (key) => (s) => {
    const n = num(s[key]);
    return n === null ? null : n / 1000;
  };

  function legend(host, items) {
    const frag = document.createDocumentFragment();
    for (const it of items) {
      const span = document.createElement('span');
      span.className = 'item';
      const sw = document.createElement('span');
      sw.className = 'sw';
      sw.style.background = it.color;
      span.appendChild(sw);
      span.appendChild(document.createTextNode(it.label));
      const val = document.createElement('span');
      val.className = 'val';
      val.textContent = it.value;
      span.appendChild(val);
      frag.appendChild(span);
    }
    host.replaceChildren(frag);
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#ccc';
  }

  const CHART_HOSTS = ['throughput', 'latency-chart', 'occ-chart', 'attempts-chart'];

  function renderCharts(v) {
    for (const id of CHART_HOSTS) remember($(id));
    const series = state.series;
    const xMax = timeDomain(v, series);
    const bands = faultWindows(v);
    const last = series.length ? series[series.length - 1] : {};
    const C = {
      commits: cssVar('--commits'),
      declines: cssVar('--declines'),
      errors: cssVar('--errors'),
      p50: cssVar('--p50'),
      p99: cssVar('--p99'),
      occ: cssVar('--occ'),
    };

    const lanes = regionLanes(v, series);
    const marginNames = lanes.map((l) => l.name);
    const tp = $('throughput');
    tp.setAttribute('data-series-len', String(series.length));
    drawTimeChart(tp, series, {
      xMax,
      bands,
      bandMarks: true,
      lanes,
      marginNames,
      panes: [
        { weight: 2, label: 'declines/s', lines: [{ get: getN('declines'), color: C.declines, area: true }] },
        { weight: 1.25, label: 'commits/s', lines: [{ get: getN('commits'), color: C.commits, area: true }] },
        { weight: 1, label: 'errors/s', lines: [{ get: getN('errors'), color: C.errors, area: true }] },
      ],
    });
    legend($('throughput-legend'), [
      { label: 'commits/s', color: C.commits, value: compact(last.commits) },
      { label: 'declines/s', color: C.declines, value: compact(last.declines) },
      { label: 'errors/s', color: C.errors, value: compact(last.errors) },
    ]);

    drawTimeChart($('latency-chart'), series, {
      xMax,
      bands,
      bandMarks: false,
      marginNames,
      panes: [
        {
          weight: 1,
          log: true,
          lines: [
            { get: getMs('p99_us'), color: C.p99 },
            { get: getMs('p50_us'), color: C.p50 },
          ],
        },
      ],
    });
    legend($('latency-legend'), [
      { label: 'p50', color: C.p50, value: fmtMs(getMs('p50_us')(last)) + ' ms' },
      { label: 'p99', color: C.p99, value: fmtMs(getMs('p99_us')(last)) + ' ms' },
    ]);

    drawTimeChart($('occ-chart'), series, {
      xMax,
      bands,
      bandMarks: false,
      panes: [{ weight: 1, lines: [{ get: getN('occ_retries'), color: C.occ, area: true }] }],
    });

    drawAttempts($('attempts-chart'), Array.isArray(v.attempts) ? v.attempts : []);
  }

  // Attempts distribution: bar i = executions that took i+1 runs; log heights so the
  // tail of 2, 3, … attempts stays visible next to a million first-time successes.
  function drawAttempts(host, attempts) {
    const W = Math.floor(host.clientWidth);
    const H = Math.floor(host.clientHeight);
    if (W < 40 || H < 30) {
      host.replaceChildren();
      return;
    }
    const fs = fontPx(host);
    const n = Math.max(16, attempts.length);
    const counts = [];
    for (let i = 0; i < n; i++) counts.push(Math.max(0, num(attempts[i]) || 0));
    const max = Math.max(1, ...counts);
    const svg = S('svg', { width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, 'font-size': r1(fs) });
    const ml = fs * 0.2;
    const mr = fs * 0.2;
    const mt = fs * 1.1;
    const mb = fs * 1.3;
    const pw = W - ml - mr;
    const ph = H - mt - mb;
    const slot = pw / n;
    const bw = Math.max(1, slot * 0.72);
    const top = Math.log10(max) + 0.15;
    const yOf = (c) => (c <= 0 ? 0 : ((Math.log10(c) + 0.15) / (top + 1e-9)) * ph);
    const countFs = Math.min(fs * 0.85, slot * 0.55);
    S('line', { class: 'baseline', x1: ml, x2: W - mr, y1: r1(mt + ph), y2: r1(mt + ph) }, svg);
    counts.forEach((c, i) => {
      const x = ml + i * slot + (slot - bw) / 2;
      const h = yOf(c);
      if (c > 0) {
        const r = S('rect', { class: 'bar-rect', x: r1(x), y: r1(mt + ph - h), width: r1(bw), height: r1(Math.max(1, h)) }, svg);
        const tt = S('title', null, r);
        tt.textContent = (i + 1) + ' attempt' + (i ? 's' : '') + ': ' + c;
        if (countFs >= 7) {
          T(svg, x + bw / 2, mt + ph - h - fs * 0.2, compact(c), { 'text-anchor': 'middle', class: 'bar-count', 'font-size': r1(countFs) });
        }
      }
      const labelEvery = slot < fs * 1.1 ? (slot < fs * 0.6 ? 4 : 2) : 1;
      if (i % labelEvery === 0 || i === n - 1) {
        T(svg, x + bw / 2, H - fs * 0.3, String(i + 1), { 'text-anchor': 'middle', class: 'tick-label', 'font-size': r1(Math.min(fs * 0.85, slot * 0.9)) });
      }
    });
    host.replaceChildren(svg);
  }

  // ---------------------------------------------------------------- panels

  function renderHeader(v) {
    setText($('scenario'), v.scenario == null ? '—' : String(v.scenario));
    setText($('seed'), v.seed == null ? '—' : String(v.seed));
    setText($('run-id'), v.run_id == null ? '—' : String(v.run_id));
    const target = v.target == null ? '' : String(v.target);
    setText($('target'), target);
    $('target').title = target;

    const done = num(v.done) || 0;
    const started = num(v.started) || 0;
    const total = num(v.total) || 0;
    setFigure(document.querySelector('[data-figure="done"]'), v.done == null ? 0 : v.done);
    setFigure(document.querySelector('[data-figure="total"]'), v.total == null ? 0 : v.total);
    const pct = total > 0 ? Math.min(100, (done / total) * 100) : 0;
    const spct = total > 0 ? Math.min(100, (started / total) * 100) : 0;
    setText($('pct'), total > 0 ? (pct >= 99.95 || pct === 0 ? pct.toFixed(0) : pct.toFixed(1)) + '%' : '');
    $('progress-fill').style.width = pct + '%';
    $('progress-started').style.width = spct + '%';
    $('progress-bar').setAttribute('aria-valuenow', pct.toFixed(1));

    const phase = v.phase == null ? 'running' : String(v.phase);
    document.body.setAttribute('data-phase', phase);
    setText($('phase'), phase.toUpperCase());
    const status = v.status == null ? '' : String(v.status);
    setText($('status-line'), status);
    $('status-line').hidden = status === '';
    $('status-line').title = status;

    const paused = v.paused === true;
    $('paused').hidden = !paused;
    document.body.classList.toggle('is-paused', paused);
    setText($('elapsed'), fmtElapsed(v.elapsed_s));

    const dropped = num(v.dropped_frames) || 0;
    setText($('dropped-frames'), String(dropped));
    $('dropped-frames').parentElement.classList.toggle('some', dropped > 0);
  }

  const INVARIANTS = ['oversells', 'duplicate_settlements', 'ledger_drift', 'mandate_breaches'];

  function renderInvariants(v) {
    const live = v.live && typeof v.live === 'object' ? v.live : {};
    for (const key of INVARIANTS) {
      const n = num(live[key]);
      const box = $('inv-' + key);
      box.classList.toggle('bad', n !== null && n !== 0);
      box.classList.toggle('unknown', n === null);
      setFigure(box.querySelector('[data-figure]'), n === null ? null : n);
    }
    const extra = [];
    if (num(live.polls) !== null) extra.push('polls ' + compact(live.polls));
    if (num(live.errors) !== null) extra.push('read errors ' + compact(live.errors));
    setText($('live-extra'), extra.join(' · '));
  }

  function outcomeCount(v, name) {
    for (const o of Array.isArray(v.outcomes) ? v.outcomes : []) {
      if (Array.isArray(o) && o[0] === name) return num(o[1]) || 0;
    }
    return 0;
  }

  function renderTotals(v) {
    setFigure(document.querySelector('[data-figure="requests"]'), num(v.requests) || 0);
    setFigure(document.querySelector('[data-figure="committed"]'), outcomeCount(v, 'COMMITTED'));
    setFigure(document.querySelector('[data-figure="occ_retries"]'), num(v.occ_retries) || 0);
    setFigure($('retry-exhausted'), num(v.retry_exhausted) || 0);
    setFigure($('in-flight'), num(v.in_flight) || 0);
    setFigure($('started'), num(v.started) || 0);
  }

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    if (cls) td.className = cls;
    if (text !== null) td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function renderRegions(v) {
    const body = $('regions-body');
    const rows = document.createDocumentFragment();
    for (const r of Array.isArray(v.regions) ? v.regions : []) {
      if (!r) continue;
      const tr = document.createElement('tr');
      tr.setAttribute('data-region', r.name == null ? '' : String(r.name));
      cell(tr, r.name == null ? '' : String(r.name));
      const st = r.state == null ? '' : String(r.state);
      tr.setAttribute('data-state', st);
      const td = cell(tr, null);
      const pill = document.createElement('span');
      pill.className = 'state ' + stateClass(st);
      pill.textContent = st;
      td.appendChild(pill);
      setFigure(cell(tr, '', 'num'), r.requests);
      const errs = num(r.errors) || 0;
      setFigure(cell(tr, '', 'num' + (errs > 0 ? ' err-some' : '')), r.errors);
      setFigure(cell(tr, '', 'num'), r.in_flight);
      const lf = r.last_fault == null ? '' : String(r.last_fault);
      const lfc = cell(tr, lf || '—', 'lf');
      lfc.title = lf;
      rows.appendChild(tr);
    }
    body.replaceChildren(rows);
    const leader = v.leader == null ? '' : String(v.leader);
    $('leader').hidden = leader === '';
    setText($('leader'), leader ? 'leader ' + leader : '');
    $('leader').title = leader;
  }

  const PCTS = [
    ['p50', 'p50_ms'],
    ['p90', 'p90_ms'],
    ['p99', 'p99_ms'],
    ['p99.9', 'p999_ms'],
    ['max', 'max_ms'],
  ];

  function renderPercentiles(v) {
    const c = v.latency_corrected && typeof v.latency_corrected === 'object' ? v.latency_corrected : {};
    const r = v.latency_raw && typeof v.latency_raw === 'object' ? v.latency_raw : {};
    const rows = document.createDocumentFragment();
    for (const [label, key] of PCTS) {
      const tr = document.createElement('tr');
      cell(tr, label);
      cell(tr, fmtMs(c[key]), 'num corr');
      cell(tr, fmtMs(r[key]), 'num raw');
      rows.appendChild(tr);
    }
    const tr = document.createElement('tr');
    cell(tr, 'count');
    cell(tr, compact(c.count), 'num corr');
    cell(tr, compact(r.count), 'num raw');
    rows.appendChild(tr);
    $('percentiles-body').replaceChildren(rows);
  }

  const OUTCOME_KIND = {
    COMMITTED: 'ok',
    OUT_OF_STOCK: 'answer',
    MANDATE_REJECTED: 'answer',
    DECLINED: 'answer',
    KEY_REUSED: 'fail',
    RETRY_EXHAUSTED: 'fail',
    UNAVAILABLE: 'fail',
    BAD_REQUEST: 'fail',
    CONNECTION_REFUSED: 'fail',
    IN_FLIGHT: 'fail',
    ABSENT: 'fail',
    INTERNAL: 'info',
    TIMEOUT: 'info',
    CONNECTION_RESET: 'info',
    CONTRACT_VIOLATION: 'info',
    REPLAYS: 'replay',
  };

  function renderOutcomes(v) {
    const list = [];
    for (const o of Array.isArray(v.outcomes) ? v.outcomes : []) {
      if (!Array.isArray(o) || o.length < 2) continue;
      const n = num(o[1]);
      if (n === null || n === 0) continue;
      list.push([String(o[0]), n]);
    }
    const max = Math.max(1, ...list.map((o) => o[1]));
    const frag = document.createDocumentFragment();
    for (const [name, n] of list) {
      const li = document.createElement('li');
      const kind = OUTCOME_KIND[name] || (name.startsWith('HTTP') ? 'http' : 'info');
      li.className = kind;
      li.setAttribute('data-outcome', name);
      const bar = document.createElement('span');
      bar.className = 'ob';
      // Log width: a few hundred commits still show beside a million declines.
      bar.style.width = ((Math.log10(n + 1) / Math.log10(max + 1)) * 100).toFixed(1) + '%';
      li.appendChild(bar);
      const nm = document.createElement('span');
      nm.className = 'on';
      nm.textContent = name;
      nm.title = name;
      li.appendChild(nm);
      const cnt = document.createElement('span');
      cnt.className = 'oc';
      setFigure(cnt, n);
      li.appendChild(cnt);
      frag.appendChild(li);
    }
    const ul = $('outcomes');
    ul.replaceChildren(frag);
    fitOutcomes();
  }

  // Many outcomes on a small screen: tighter rows, then two columns, rather than cut ones.
  function fitOutcomes() {
    const ul = $('outcomes');
    for (const cls of ['', 'dense', 'dense two-col']) {
      ul.className = 'outcomes ' + cls;
      if (ul.scrollHeight <= ul.clientHeight + 1) return;
    }
  }

  // ---------------------------------------------------------------- verdict

  function renderVerdict(v) {
    const banner = $('verdict-banner');
    const vd = v.verdict && typeof v.verdict === 'object' ? v.verdict : null;
    if (!vd) {
      if (!banner.hidden) {
        banner.hidden = true;
        $('verdict').replaceChildren();
        $('headline').replaceChildren();
        state.verdictKey = '';
      }
      return false;
    }
    const validity = String(vd.validity == null ? 'unknown' : vd.validity).toLowerCase();
    const cls = validity === 'valid' ? 'valid' : validity === 'invalid' ? 'invalid' : 'unknown';
    const headline = vd.headline == null ? '' : String(vd.headline);
    const note = vd.note == null ? '' : String(vd.note);
    const exit = vd.exit_code == null ? '' : String(vd.exit_code);
    const key = JSON.stringify([validity, exit, headline, note]);
    if (key === state.verdictKey && !banner.hidden) return false;
    state.verdictKey = key;

    banner.className = 'verdict-banner ' + cls;
    const verdict = $('verdict');
    verdict.className = 'verdict ' + cls;
    verdict.setAttribute('data-validity', validity);
    verdict.replaceChildren();
    const word = document.createElement('span');
    word.className = 'word';
    word.textContent = validity.toUpperCase();
    verdict.appendChild(word);
    const ex = document.createElement('span');
    ex.className = 'exit';
    ex.textContent = exit === '' ? '' : ' exit ' + exit;
    verdict.appendChild(ex);

    // The headline's text is exactly the headline. Each " · " part is kept whole on a
    // line where it fits, its separator's dot staying with it, so lines break only at
    // the space after a dot.
    const hl = $('headline');
    hl.replaceChildren();
    const parts = headline.split(' · ');
    parts.forEach((p, i) => {
      const seg = document.createElement('span');
      seg.className = 'seg';
      seg.appendChild(document.createTextNode(p));
      if (i < parts.length - 1) {
        const dot = document.createElement('span');
        dot.className = 'dot';
        dot.textContent = ' ·';
        seg.appendChild(dot);
      }
      hl.appendChild(seg);
      if (i < parts.length - 1) hl.appendChild(document.createTextNode(' '));
    });
    setText($('verdict-note'), note);
    $('verdict-note').hidden = note === '';
    banner.hidden = false;
    return true;
  }

  // The headline as large as fits in about a third of the screen's height.
  function fitHeadline() {
    const banner = $('verdict-banner');
    if (banner.hidden) return;
    const hl = $('headline');
    const word = $('verdict').querySelector('.word');
    const vh = window.innerHeight;
    const vw = window.innerWidth;
    const maxH = vh * 0.34;
    const wordSize = Math.min(vh * 0.085, vw * 0.06);
    if (word) word.style.fontSize = wordSize + 'px';
    const tries = (wrap) => {
      hl.classList.toggle('wrap', wrap);
      let size = Math.min(vh * 0.058, vw * 0.034);
      const min = Math.max(14, vh * 0.022);
      hl.style.fontSize = size + 'px';
      const fits = () => banner.scrollHeight <= maxH + 1 && hl.scrollWidth <= hl.clientWidth + 1;
      for (let i = 0; i < 40 && !fits() && size > min; i++) {
        size = Math.max(min, size * 0.94);
        hl.style.fontSize = size + 'px';
      }
      return fits();
    };
    if (!tries(false)) tries(true);
  }

  // ---------------------------------------------------------------- render loop

  function render() {
    if (!state.dirty) return;
    state.dirty = false;
    const v = state.view;
    if (!v) return;
    renderHeader(v);
    const verdictChanged = renderVerdict(v);
    if (verdictChanged) fitHeadline();
    renderInvariants(v);
    renderTotals(v);
    renderRegions(v);
    renderPercentiles(v);
    renderOutcomes(v);
    renderCharts(v);
  }

  function schedule() {
    if (state.dirty) return;
    state.dirty = true;
    // rAF when visible; the timer keeps a background or headless tab current too.
    requestAnimationFrame(render);
    setTimeout(render, 200);
  }

  // Redraw on any size change, synchronously: ResizeObserver calls back after layout and
  // before paint, so the charts never show a frame drawn for the old size (a window
  // resized, a projector switched, the verdict banner appearing, a headless screenshot).
  const drawnSize = new Map();
  function sizeKey(el) {
    return el.clientWidth + 'x' + el.clientHeight;
  }
  function remember(el) {
    drawnSize.set(el, sizeKey(el));
  }
  if (typeof ResizeObserver !== 'undefined') {
    const ro = new ResizeObserver(() => {
      if (!state.view) return;
      const viewport = window.innerWidth + 'x' + window.innerHeight;
      if (drawnSize.get(window) !== viewport) {
        drawnSize.set(window, viewport);
        fitHeadline();
      }
      const hosts = CHART_HOSTS.map($);
      if (hosts.some((h) => drawnSize.get(h) !== sizeKey(h))) {
        renderCharts(state.view);
        fitOutcomes();
      }
    });
    ro.observe(document.documentElement);
    for (const id of CHART_HOSTS) ro.observe($(id));
  } else {
    window.addEventListener('resize', () => {
      fitHeadline();
      schedule();
    });
  }

  // Exposed for tests and debugging: the merge rule and what is held.
  window.missionControl = {
    mergeSeries,
    sortedUnique,
    get series() {
      return state.series;
    },
    get view() {
      return state.view;
    },
  };

  function start() {
    connect();
    // If no event arrives soon (a proxy buffering the stream, say), paint from the
    // whole view once; the stream's events take over when they come.
    setTimeout(() => {
      if (!state.gotView) fetchWhole();
    }, 1500);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
