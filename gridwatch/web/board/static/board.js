// gridwatch status board: vanilla JavaScript, no build step, no dependencies.
// Every value from the data enters the page through textContent or createElement, never
// through innerHTML; the Content-Security-Policy allows no inline script either.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  // a positive number from the address, kept in [lo, hi]
  const setting = (value, fallback, lo, hi) => {
    const n = Number(value);
    return Number.isFinite(n) && n > 0 ? Math.min(hi, Math.max(lo, n)) : fallback;
  };
  const REFRESH_MS = setting(params.get("refresh"), 10, 1, 3600) * 1000; // ?refresh=2 for tests and kiosks
  const STALE_MS = setting(params.get("stale"), 900, 5, 86400) * 1000; // a check older than this is stale
  const PAGE_MS = setting(params.get("page"), 8, 1, 600) * 1000; // the alert column turns a page this often
  // More grids than fit on a screen (?fit=, default 60): the board opens on the streets, then a
  // street's communities, and shows grids from a unit small enough; tiles of 2,000 grids read as noise.
  const FIT = setting(params.get("fit"), 60, 1, 1e6);
  // More firing alerts than this (?group=, default 30: five pages or so): grouped by rule, then street.
  const GROUP_OVER = setting(params.get("group"), 30, 1, 1e6);
  const PERIODS = ["day", "week", "month"];
  let view = params.get("view") === "rank" ? "rank" : "wall";
  let period = PERIODS.includes(params.get("period")) ? params.get("period") : "month";

  // Page loads in this tab: it stays 1 while the board refreshes itself (kiosk scripts check it).
  let loads = 1;
  try {
    loads = Number(sessionStorage.getItem("gridwatch.web.board.loads") || 0) + 1;
    sessionStorage.setItem("gridwatch.web.board.loads", String(loads));
  } catch {
    // storage disabled: count this load only
  }
  window.__boardLoads = loads;
  window.__boardRefreshes = 0;

  const LIGHTS = ["green", "yellow", "red"];
  const SYM = { green: "●", yellow: "▲", red: "■", unknown: "?" };
  const SEVERITY_LIGHT = { critical: "red", warning: "yellow" };

  const T = {
    zh: {
      title: "网格运行状态看板",
      loading: "正在加载…",
      street: "街道",
      community: "社区",
      colour: "灯色",
      search: "搜索网格名称",
      allStreets: "全部街道",
      allCommunities: "全部社区",
      allLights: "全部灯色",
      notGreen: "▲■ 黄灯和红灯",
      green: "绿灯",
      yellow: "黄灯",
      red: "红灯",
      unknown: "未知",
      total: "全部 {n} 个网格",
      gridsTitle: "网格",
      noMatch: "没有符合条件的网格",
      alerts: "告警",
      noAlerts: "当前没有告警",
      silenced: "已静默",
      critical: "严重",
      warning: "一般",
      info: "提示",
      updated: "更新于 {time}",
      shown: "显示 {n} / {total}",
      close: "关闭",
      reasons: "亮灯原因",
      noReasons: "各项工作正常",
      days: "近期每日亮灯",
      daysSum: "绿灯 {green} 天 · 黄灯 {yellow} 天 · 红灯 {red} 天",
      noDays: "暂无每日亮灯记录",
      gridAlerts: "本网格告警",
      noGridAlerts: "无",
      metrics: "指标",
      metric: "指标",
      labels: "维度",
      value: "数值",
      gridId: "编号 {id}",
      zone: "{zone}区",
      zones: { red: "红", yellow: "黄", blue: "蓝" },
      since: "{time} 起",
      connLost: "无法连接 gridwatch（{error}）：显示的是 {time} 的数据",
      connNever: "无法连接 gridwatch（{error}）",
      stateDb: "状态数据库无法写入（{error}）：告警状态和待发通知只保存在内存中，重启将丢失",
      sourceDown: "数据源 {name} 不可用：{error}",
      checkFailed: "检查 {name} 运行失败：{error}",
      checkStale: "数据已过时：检查 {name} 最近一次运行在 {time}",
      checkNever: "检查 {name} 尚未运行",
      greyed: "网格灯色已置灰：数据没有按时更新，各网格的灯色可能已经变化",
      page: "{n}/{total} 页",
      more: "另有 {n} 条",
      detailError: "无法读取该网格的详情（{error}）",
      langButton: "English",
      yes: "是",
      no: "否",
      dayUnit: "{n} 天",
      wall: "看板",
      ranking: "排名",
      today: "今日",
      thisWeek: "本周",
      thisMonth: "本月",
      streetRanking: "街道排名（按网格平均得分）",
      gridRanking: "网格排名（全区）",
      place: "名次",
      meanScore: "平均得分",
      gridCount: "网格数",
      score: "得分",
      placeInStreet: "街道内名次",
      yellowDays: "黄灯天数",
      redDays: "红灯天数",
      district: "全区",
      unitGrids: "{n} 个网格",
      unnamedRule: "未命名的规则",
      inStreets: "涉及 {n} 个街道",
      rankPeriod: "{from} 至 {to}（截至 {today}）",
      rankError: "无法读取排名（{error}）",
    },
    en: {
      title: "Grid status board",
      loading: "Loading…",
      street: "Street",
      community: "Community",
      colour: "Light",
      search: "Search grid names",
      allStreets: "All streets",
      allCommunities: "All communities",
      allLights: "All lights",
      notGreen: "▲■ Yellow and red",
      green: "Green",
      yellow: "Yellow",
      red: "Red",
      unknown: "Unknown",
      total: "All {n} grids",
      gridsTitle: "Grids",
      noMatch: "No grid matches the filters",
      alerts: "Alerts",
      noAlerts: "No alerts firing",
      silenced: "silenced",
      critical: "critical",
      warning: "warning",
      info: "info",
      updated: "Updated {time}",
      shown: "Showing {n} / {total}",
      close: "Close",
      reasons: "Why this light",
      noReasons: "All work on track",
      days: "Recent daily lights",
      daysSum: "green {green} d · yellow {yellow} d · red {red} d",
      noDays: "No daily lights recorded yet",
      gridAlerts: "Alerts on this grid",
      noGridAlerts: "None",
      metrics: "Metrics",
      metric: "Metric",
      labels: "Labels",
      value: "Value",
      gridId: "ID {id}",
      zone: "{zone} zone",
      zones: { red: "red", yellow: "yellow", blue: "blue" },
      since: "since {time}",
      connLost: "Cannot reach gridwatch ({error}): showing data from {time}",
      connNever: "Cannot reach gridwatch ({error})",
      stateDb: "The state database cannot be written ({error}): alert state and queued notifications are in memory only and a restart loses them",
      sourceDown: "Source {name} is down: {error}",
      checkFailed: "Check {name} failed: {error}",
      checkStale: "Stale data: check {name} last ran at {time}",
      checkNever: "Check {name} has not run yet",
      greyed: "Lights greyed: the data is not up to date, and any grid's light may have changed",
      page: "page {n}/{total}",
      more: "{n} more",
      detailError: "Cannot read this grid's details ({error})",
      langButton: "中文",
      yes: "yes",
      no: "no",
      dayUnit: "{n} d",
      wall: "Board",
      ranking: "Ranking",
      today: "Today",
      thisWeek: "This week",
      thisMonth: "This month",
      streetRanking: "Streets (by their grids' mean score)",
      gridRanking: "Grids (district)",
      place: "Place",
      meanScore: "Mean score",
      gridCount: "Grids",
      score: "Score",
      placeInStreet: "In street",
      yellowDays: "Yellow days",
      redDays: "Red days",
      district: "District",
      unitGrids: "{n} grids",
      unnamedRule: "Unnamed rule",
      inStreets: "in {n} streets",
      rankPeriod: "{from} to {to} (as of {today})",
      rankError: "Cannot read the ranking ({error})",
    },
  };

  // English for what the API says in Chinese (gridwatch/pipeline/light.py); anything else keeps its text.
  const CATEGORY_EN = {
    社区矫正人员: "community correction",
    流动人口: "floating population",
    孕妇: "pregnant women",
    独居老人: "elderly living alone",
    残疾人: "disabled",
    留守儿童: "left-behind children",
  };
  const KIND_EN = {
    日报: "Daily",
    综合信息: "Twice-weekly",
    周报告单: "Weekly",
    月报: "Monthly",
    季度分析: "Quarterly",
    年报: "Annual",
  };
  let lang = "zh";
  try {
    lang = params.get("lang") || localStorage.getItem("gridwatch.web.board.lang") || "zh";
  } catch {
    lang = params.get("lang") || "zh";
  }
  if (!T[lang]) lang = "zh";

  const $ = (id) => document.getElementById(id);
  const t = (key, vars) => {
    let s = T[lang][key] ?? T.zh[key] ?? key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : ""));
    return s;
  };
  const word = (light) => t(LIGHTS.includes(light) ? light : "unknown");
  const lightOf = (light) => (LIGHTS.includes(light) ? light : "unknown");
  const el = (tag, className, text) => {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };

  // -- time -------------------------------------------------------------------------------
  let skew = 0; // server clock − this screen's clock, from the Date header: a kiosk's clock may be off
  const serverNow = () => Date.now() + skew;
  const parseTime = (iso) => (iso ? Date.parse(String(iso).replace(/(\.\d{3})\d+/, "$1")) : NaN);
  const clock = (ms) => {
    if (!Number.isFinite(ms)) return "—";
    const d = new Date(ms);
    const opts = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
    if (new Date(serverNow()).toDateString() !== d.toDateString()) Object.assign(opts, { month: "2-digit", day: "2-digit" });
    return d.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", opts);
  };
  const duration = (s) => {
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (lang === "zh") return d ? `${d}天${h}小时` : h ? `${h}小时${m}分` : `${m}分`;
    return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : `${m} min`;
  };

  // -- reasons ----------------------------------------------------------------------------
  function reasonText(d) {
    const text = String(d.text ?? "");
    if (lang === "zh") return text;
    const n = (text.match(/(\d+)\s*[件户]/) || [])[1];
    switch (d.code) {
      case "major_incident_open":
        return n ? `${n} major case(s) open` : "A major case is open";
      case "daily_report_flagged":
        return "Today's report flags a major dispute, an early-warning dispute or a petition movement";
      case "daily_report_missing":
        return "Today's report is missing or late";
      case "incidents_overdue":
        return n ? `${n} case(s) past their deadline` : "Cases past their deadline";
      case "key_households_overdue": {
        const cat = (text.match(/（(.+?)）/) || [])[1];
        const what = cat ? ` (${CATEGORY_EN[cat] || cat})` : "";
        return `${n || "Some"} key household(s)${what} overdue for a visit`;
      }
      case "patrol_overdue":
        return "Patrol overdue";
      case "report_overdue": {
        const kind = text.replace(/逾期未报$/, "");
        return `${KIND_EN[kind] || kind} report overdue`;
      }
      default:
        return text;
    }
  }
  const detailsOf = (g) =>
    Array.isArray(g.details) ? g.details : (g.reasons || []).map((text) => ({ light: g.light, code: "", text }));

  // -- state ------------------------------------------------------------------------------
  const state = { grids: [], byId: new Map(), alerts: [], status: null, fetchedAt: NaN, error: null };
  const tiles = new Map(); // grid id → its tile, kept across refreshes
  let layout = []; // [{street, section, counts, communities: [{key, community, box, counts, ids}]}]
  let signature = "";

  const filters = {
    street: params.get("street") || "",
    community: params.get("community") || "",
    light: params.get("light") || "",
    q: params.get("q") || "",
  };

  async function getJSON(path) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), Math.max(REFRESH_MS, 5000));
    try {
      const resp = await fetch(path, { cache: "no-store", signal: ctrl.signal, headers: { Accept: "application/json" } });
      const date = Date.parse(resp.headers.get("Date") || "");
      if (Number.isFinite(date)) skew = date - Date.now();
      let body = null;
      try {
        body = await resp.json();
      } catch {
        body = null;
      }
      if (!resp.ok) throw new Error((body && body.error) || `HTTP ${resp.status}`);
      return body;
    } catch (exc) {
      if (exc.name === "AbortError") throw new Error("timeout");
      throw exc;
    } finally {
      clearTimeout(timer);
    }
  }

  let asked = params.get("grid"); // ?grid=ID opens that grid's detail (the robots link to it)
  async function refresh() {
    try {
      const [grids, alerts, status] = await Promise.all([
        getJSON("api/v1/grids"),
        getJSON("api/v1/alerts"),
        getJSON("api/v1/status"),
      ]);
      state.grids = Array.isArray(grids) ? grids : [];
      state.byId = new Map(state.grids.map((g) => [String(g.grid), g]));
      state.alerts = Array.isArray(alerts) ? alerts : [];
      state.status = status && typeof status === "object" ? status : null;
      state.fetchedAt = serverNow();
      state.error = null;
    } catch (exc) {
      state.error = exc && exc.message ? exc.message : String(exc);
    }
    try {
      render();
      if (asked !== null && state.byId.has(asked)) {
        openDetail(asked);
        asked = null;
      }
      if (openGrid !== null) await loadDetail(openGrid);
    } catch (exc) {
      setTimeout(() => {
        throw exc; // reported as uncaught, but the board keeps refreshing
      });
    } finally {
      window.__boardRefreshes += 1;
      setTimeout(refresh, REFRESH_MS);
    }
  }

  // -- rendering --------------------------------------------------------------------------
  function countLights(grids) {
    const c = { green: 0, yellow: 0, red: 0 };
    for (const g of grids) if (g.light in c) c[g.light] += 1;
    return c;
  }

  function renderCounts(box, c, words) {
    box.replaceChildren(
      ...LIGHTS.map((l) => {
        const s = el("span", `count light-${l}`, `${SYM[l]}${words ? ` ${word(l)} ` : " "}`);
        s.dataset.count = l;
        s.title = word(l);
        s.classList.toggle("zero", c[l] === 0);
        s.append(el("b", "", c[l]));
        return s;
      }),
    );
  }

  function shortName(g) {
    // the street and community head the tile's group: drop them from the front of the name
    let s = String(g.name || g.grid);
    for (const prefix of [g.street, g.community]) {
      if (prefix && s.startsWith(prefix)) {
        const rest = s.slice(prefix.length).replace(/^[\s\-–—·/|_]+/, "");
        if (rest) s = rest;
      }
    }
    return s;
  }

  function tileFor(id) {
    let tile = tiles.get(id);
    if (!tile) {
      tile = el("button", "tile");
      tile.type = "button";
      tile.dataset.grid = id;
      tile.append(el("span", "sym"), el("span", "name"), el("span", "gid"));
      tiles.set(id, tile);
    }
    return tile;
  }

  function updateTile(tile, g) {
    const light = lightOf(g.light);
    tile.dataset.light = String(g.light);
    tile.className = `tile light-${light}`;
    tile.children[0].textContent = SYM[light];
    tile.children[1].textContent = shortName(g);
    tile.children[2].textContent = String(g.grid);
    const reasons = detailsOf(g).map(reasonText);
    tile.setAttribute("aria-label", [`${g.name}: ${word(light)}`, ...reasons].join("; "));
  }

  function buildLayout() {
    const streets = new Map();
    for (const g of state.grids) {
      const street = String(g.street ?? "");
      const community = String(g.community ?? "");
      if (!streets.has(street)) streets.set(street, new Map());
      const comms = streets.get(street);
      if (!comms.has(community)) comms.set(community, []);
      comms.get(community).push(String(g.grid));
    }
    for (const item of layout) item.section.remove();
    layout = [];
    const host = $("grids");
    for (const [street, comms] of streets) {
      const section = el("section", "street");
      section.dataset.street = street;
      const head = el("h2", "street-head");
      const counts = el("span", "counts");
      head.append(el("span", "street-name", street || "—"), counts);
      const wrap = el("div", "communities");
      section.append(head, wrap);
      const communities = [];
      for (const [community, ids] of comms) {
        const box = el("div", "community");
        box.dataset.community = community;
        const h = el("h3", "community-head");
        const ccounts = el("span", "counts small");
        h.append(el("span", "community-name", community || "—"), ccounts);
        const list = el("div", "tiles");
        list.append(...ids.map(tileFor));
        box.append(h, list);
        wrap.append(box);
        communities.push({ key: `${street}\n${community}`, community, box, counts: ccounts, ids });
      }
      host.append(section);
      layout.push({ street, section, counts, communities });
    }
    const live = new Set(state.byId.keys());
    for (const id of tiles.keys()) if (!live.has(id)) tiles.delete(id);
    buildFilterOptions();
  }

  function option(value, text, selected) {
    const o = new Option(text, value);
    o.selected = selected;
    return o;
  }

  function buildFilterOptions() {
    const streetSel = $("f-street");
    const streets = layout.map((s) => s.street);
    if (filters.street && !streets.includes(filters.street)) filters.street = "";
    streetSel.replaceChildren(
      option("", t("allStreets"), !filters.street),
      ...streets.map((s) => option(s, s || "—", s === filters.street)),
    );
    const comms = layout.filter((s) => !filters.street || s.street === filters.street).flatMap((s) => s.communities);
    const names = comms.map((c) => c.community);
    const dup = new Set(names.filter((n, i) => names.indexOf(n) !== i));
    if (filters.community && !comms.some((c) => c.key === filters.community || c.community === filters.community)) {
      filters.community = "";
    }
    $("f-community").replaceChildren(
      option("", t("allCommunities"), !filters.community),
      ...comms.map((c) => {
        const street = c.key.split("\n")[0];
        const text = dup.has(c.community) ? `${c.community}（${street}）` : c.community || "—";
        return option(c.key, text, c.key === filters.community || c.community === filters.community);
      }),
    );
    if (filters.community && !filters.community.includes("\n")) {
      filters.community = $("f-community").value; // a name from the URL becomes its key
    }
    $("f-light").replaceChildren(
      option("", t("allLights"), !filters.light),
      ...LIGHTS.slice()
        .reverse()
        .map((l) => option(l, `${SYM[l]} ${word(l)}`, filters.light === l)),
      option("notgreen", t("notGreen"), filters.light === "notgreen"),
    );
    $("f-search").value = filters.q;
  }

  function matches(g, street, key) {
    if (filters.street && street !== filters.street) return false;
    if (filters.community && key !== filters.community) return false;
    if (filters.light === "notgreen" ? g.light === "green" : filters.light && g.light !== filters.light) return false;
    const q = filters.q.trim().toLowerCase();
    return !q || String(g.name).toLowerCase().includes(q) || String(g.grid).toLowerCase().includes(q);
  }

  function applyFilters() {
    const lvl = level();
    let shown = 0;
    for (const s of layout) {
      let streetShown = 0;
      for (const c of s.communities) {
        let n = 0;
        for (const id of c.ids) {
          const g = state.byId.get(id);
          const ok = g !== undefined && matches(g, s.street, c.key);
          tiles.get(id).hidden = !ok;
          if (ok) n += 1;
        }
        c.box.hidden = n === 0;
        streetShown += n;
      }
      s.section.hidden = streetShown === 0 || lvl !== "grids";
      shown += streetShown;
    }
    $("shown").textContent = t("shown", { n: shown, total: state.grids.length });
    $("empty").hidden = shown > 0 || state.grids.length === 0;
    renderUnits(lvl);
    renderCrumbs();
    renderAlerts();
  }

  // -- the district, a street, a community: what the screen shows ------------------------------
  const streetOf = (g) => String(g.street ?? "");
  const communityKey = (g) => `${streetOf(g)}\n${String(g.community ?? "")}`;

  // Grids when those chosen fit on the screen (or are searched for); else the units that hold them.
  function level() {
    if (filters.q.trim() || filters.community) return "grids";
    const grids = filters.street ? state.grids.filter((g) => streetOf(g) === filters.street) : state.grids;
    if (grids.length <= FIT) return "grids";
    return filters.street || new Set(state.grids.map(streetOf)).size === 1 ? "communities" : "streets";
  }

  const worstOf = (c) => (c.red ? "red" : c.yellow ? "yellow" : c.green ? "green" : "unknown");

  function renderUnits(lvl) {
    const box = $("units");
    box.hidden = lvl === "grids";
    if (box.hidden) {
      box.replaceChildren();
      return;
    }
    const units = new Map();
    for (const g of state.grids) {
      if (filters.street && streetOf(g) !== filters.street) continue;
      const key = lvl === "streets" ? streetOf(g) : communityKey(g);
      if (!units.has(key)) units.set(key, { street: streetOf(g), community: String(g.community ?? ""), grids: [] });
      units.get(key).grids.push(g);
    }
    const out = [];
    for (const u of units.values()) {
      const c = countLights(u.grids);
      if (filters.light === "notgreen" ? c.red + c.yellow === 0 : filters.light && !c[filters.light]) continue;
      const light = worstOf(c);
      const name = (lvl === "streets" ? u.street : u.community) || "—";
      const b = el("button", `unit light-${light}`);
      b.type = "button";
      b.dataset.unit = lvl === "streets" ? "street" : "community";
      b.dataset.unitStreet = u.street;
      if (lvl !== "streets") b.dataset.unitCommunity = u.community;
      b.dataset.light = light;
      const head = el("span", "u-head");
      head.append(el("span", "sym", SYM[light]), el("span", "uname", name));
      const counts = el("span", "counts small");
      renderCounts(counts, c, true);
      const body = el("span", "u-body");
      body.append(el("span", "ugrids", t("unitGrids", { n: u.grids.length })), counts);
      b.append(head, body);
      b.setAttribute("aria-label", `${name}: ${LIGHTS.map((l) => `${word(l)} ${c[l]}`).join(", ")}`);
      out.push(b);
    }
    box.replaceChildren(...out);
  }

  function renderCrumbs() {
    const nav = $("crumbs");
    nav.hidden = state.grids.length <= FIT;
    if (nav.hidden) return;
    const streets = new Set(state.grids.map(streetOf));
    const [keyStreet, community] = filters.community.includes("\n") ? filters.community.split("\n") : ["", filters.community];
    const street = filters.street || keyStreet;
    const crumb = (text, goTo) => {
      if (!goTo) return el("span", "crumb here", text);
      const b = el("button", "crumb", text);
      b.type = "button";
      b.addEventListener("click", goTo);
      return b;
    };
    const top = streets.size === 1 ? [...streets][0] || t("district") : t("district");
    const items = [crumb(top, street || community ? () => go("", "") : null)];
    if (streets.size > 1 && street) items.push(crumb(street, community ? () => go(street, "") : null));
    if (community) items.push(crumb(community, null));
    nav.replaceChildren(...items.flatMap((b, i) => (i ? [el("span", "sep", "›"), b] : [b])));
  }

  // down (a tile) or up (the breadcrumb): a step in the browser's history, so Back goes back
  function go(street, community) {
    filters.street = street;
    filters.community = community;
    buildFilterOptions();
    applyFilters();
    syncUrl(true);
    $("grids").scrollTop = 0;
  }
  $("units").addEventListener("click", (e) => {
    const u = e.target.closest(".unit");
    if (!u) return;
    if (u.dataset.unit === "street") go(u.dataset.unitStreet, "");
    else go(filters.street, `${u.dataset.unitStreet}\n${u.dataset.unitCommunity}`);
  });

  function render() {
    const sig = JSON.stringify(state.grids.map((g) => [g.street, g.community, g.grid]));
    if (sig !== signature) {
      signature = sig;
      buildLayout();
    }
    for (const [id, g] of state.byId) updateTile(tiles.get(id), g);
    renderCounts($("totals"), countLights(state.grids), true);
    $("totals").prepend(el("span", "total", t("total", { n: state.grids.length })));
    for (const s of layout) {
      const grids = s.communities.flatMap((c) => c.ids.map((id) => state.byId.get(id)));
      renderCounts(s.counts, countLights(grids), true);
      for (const c of s.communities) renderCounts(c.counts, countLights(c.ids.map((id) => state.byId.get(id))), false);
    }
    applyFilters(); // and the alerts of what it shows
    renderStatus();
  }

  function alertItem(a) {
    const sev = String(a.severity || "info");
    const li = el("li", `alert sev-${SEVERITY_LIGHT[sev] ? sev : "info"}`);
    const labels = a.labels && typeof a.labels === "object" ? a.labels : {};
    const gridId = labels.grid === undefined ? null : String(labels.grid);
    const g = gridId === null ? undefined : state.byId.get(gridId);
    li.dataset.alert = String(a.alert ?? "");
    if (gridId !== null) li.dataset.alertGrid = gridId;
    const head = el("div", "alert-head");
    const light = SEVERITY_LIGHT[sev] || "unknown";
    head.append(
      el("span", `sev light-${light}`, `${SYM[light] === "?" ? "◆" : SYM[light]} ${t(sev in T.zh ? sev : "info")}`),
      el("span", "agrid", g ? g.name : gridId === null ? String(a.alert ?? "") : gridId),
      el("time", "since", t("since", { time: clock(parseTime(a.active_since)) })),
    );
    li.append(head, el("p", "summary", a.summary || a.alert || ""));
    if (a.silenced) {
      li.classList.add("silenced");
      li.dataset.silenced = "true";
      head.append(el("span", "tag", t("silenced")));
    }
    if (g) {
      li.tabIndex = 0;
      li.classList.add("clickable");
    }
    return li;
  }

  const firingNewestFirst = (alerts) =>
    alerts
      .filter((a) => a && a.state === "firing")
      .sort(
        (a, b) =>
          (parseTime(b.active_since) || 0) - (parseTime(a.active_since) || 0) ||
          (b.severity === "critical") - (a.severity === "critical"),
      );

  // The alerts of what the screen shows: a street's (or a community's) when one is chosen.
  function inLevel(a) {
    const labels = a.labels && typeof a.labels === "object" ? a.labels : {};
    const g = labels.grid === undefined ? undefined : state.byId.get(String(labels.grid));
    const street = String((g ? g.street : labels.street) ?? "");
    const community = String((g ? g.community : labels.community) ?? "");
    if (filters.street && street !== filters.street) return false;
    return !filters.community || `${street}\n${community}` === filters.community;
  }

  // Many alerts are read as Alertmanager groups them: by rule, then by street, each with its count;
  // a click opens a group (kept open across refreshes), down to the single alerts.
  const opened = new Set();
  const severityOrder = (items) => (items.some((a) => a.severity === "critical") ? 0 : 1);
  const ruleTitle = (a) => inLang(a.title) || t("unnamedRule");

  function groupBy(items, keyOf) {
    const groups = new Map();
    for (const a of items) {
      const k = keyOf(a);
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(a);
    }
    return [...groups].sort(
      ([ka, a], [kb, b]) => severityOrder(a) - severityOrder(b) || b.length - a.length || ka.localeCompare(kb, "zh"),
    );
  }

  // path: the rule's code, or code:street (a code has no colon)
  function groupItem(path, name, items, inner) {
    const critical = severityOrder(items) === 0;
    const li = el("li", `agroup sev-${critical ? "critical" : "warning"}`);
    li.dataset.group = path;
    const open = opened.has(path);
    const head = el("button", "agroup-head");
    head.type = "button";
    head.setAttribute("aria-expanded", String(open));
    const light = critical ? "red" : "yellow";
    head.append(
      el("span", `sev light-${light}`, `${SYM[light]} ${t(critical ? "critical" : "warning")}`),
      el("span", "gname", name),
      el("span", "gcount", String(items.length)),
    );
    const streets = new Set(items.map((a) => (a.labels && a.labels.street) || ""));
    if (!path.includes(":") && streets.size > 1) head.append(el("span", "gwhere", t("inStreets", { n: streets.size })));
    li.append(head);
    if (open) {
      const list = el("ol", "alert-list inner");
      list.append(...inner());
      li.append(list);
    }
    return li;
  }

  function groupedAlerts(firing) {
    return groupBy(firing, (a) => String(a.alert ?? "")).map(([rule, items]) =>
      groupItem(rule, ruleTitle(items[0]), items, () =>
        filters.street || filters.community
          ? items.map(alertItem)
          : groupBy(items, (a) => String((a.labels && a.labels.street) || "")).map(([street, inStreet]) =>
              groupItem(`${rule}:${street}`, street || "—", inStreet, () => inStreet.map(alertItem)),
            ),
      ),
    );
  }

  function renderAlerts() {
    const firing = firingNewestFirst(state.alerts).filter(inLevel);
    const grouped = firing.length > GROUP_OVER;
    const list = $("alert-list");
    list.replaceChildren(...(grouped ? groupedAlerts(firing) : firing.map(alertItem)));
    list.dataset.grouped = String(grouped);
    $("alert-count").textContent = String(firing.length);
    $("no-alerts").hidden = firing.length > 0;
    showPage();
  }

  // -- the alert column pages itself: a wall screen has nobody to scroll it ---------------------
  const alertList = $("alert-list");
  const still = window.matchMedia("(prefers-reduced-motion: reduce)");
  function showPage() {
    const box = $("alert-page");
    const pages = Math.ceil(alertList.scrollHeight / Math.max(1, alertList.clientHeight) - 0.02);
    box.hidden = pages <= 1;
    const end = alertList.scrollTop + alertList.clientHeight >= alertList.scrollHeight - 2;
    const at = end ? pages : 1 + Math.floor(alertList.scrollTop / Math.max(1, alertList.clientHeight));
    box.textContent = t("page", { n: Math.min(pages, at), total: pages });
  }
  function turnPage() {
    const over = alertList.scrollHeight - alertList.clientHeight;
    // a person reading (pointer on the column, focus in it, a grid's detail open) holds the page
    const reading = alertList.matches(":hover") || alertList.contains(document.activeElement) || dialog.open;
    if (over > 2 && !reading) {
      const top = alertList.scrollTop >= over - 2 ? 0 : Math.min(over, alertList.scrollTop + alertList.clientHeight);
      alertList.scrollTo({ top, behavior: still.matches ? "auto" : "smooth" });
    }
  }
  alertList.addEventListener("scroll", showPage, { passive: true });
  setInterval(turnPage, PAGE_MS);

  function renderStatus() {
    const updated = $("updated");
    updated.textContent = Number.isFinite(state.fetchedAt) ? t("updated", { time: clock(state.fetchedAt) }) : t("loading");
    if (Number.isFinite(state.fetchedAt)) updated.dataset.time = new Date(state.fetchedAt).toISOString();
    const lines = [];
    if (state.error) {
      lines.push(
        Number.isFinite(state.fetchedAt)
          ? t("connLost", { error: state.error, time: clock(state.fetchedAt) })
          : t("connNever", { error: state.error }),
      );
    }
    // A light is only as fresh as the data behind it. Which grids a check or a source covers is
    // not known here, so one that failed or fell behind greys every tile rather than leave the
    // wall showing colours that may no longer hold; so does losing gridwatch itself.
    let stale = Boolean(state.error);
    const st = state.status;
    if (st) {
      const db = st.state_database;
      if (db && db.writable === false) lines.unshift(t("stateDb", { error: db.error || "—" }));
      for (const s of st.sources || []) {
        if (s.up === false) lines.push(t("sourceDown", { name: s.name, error: s.error || "—" }));
        stale = stale || s.up === false;
      }
      const started = parseTime(st.started_at);
      for (const c of st.checks || []) {
        const last = parseTime(c.last_run);
        const before = lines.length;
        if (c.ok === false) lines.push(t("checkFailed", { name: c.name, error: c.error || "—" }));
        else if (!Number.isFinite(last)) {
          if (serverNow() - started > STALE_MS) lines.push(t("checkNever", { name: c.name }));
        } else if (serverNow() - last > STALE_MS) lines.push(t("checkStale", { name: c.name, time: clock(last) }));
        stale = stale || lines.length > before;
      }
    }
    if (stale && state.grids.length) lines.unshift(t("greyed"));
    const box = $("warning");
    const shownLines = lines.slice(0, 4);
    if (lines.length > shownLines.length) shownLines.push(t("more", { n: lines.length - shownLines.length }));
    box.replaceChildren(el("span", "warn-icon", "⚠"), ...shownLines.map((line) => el("span", "warn-line", line)));
    box.hidden = lines.length === 0;
    document.body.classList.toggle("is-stale", lines.length > 0);
    document.body.classList.toggle("is-offline", Boolean(state.error));
    document.body.classList.toggle("is-greyed", stale);
    $("grids").dataset.greyed = String(stale);
  }

  // -- hover: the reasons of a light -------------------------------------------------------
  const tip = $("tip");
  function showTip(tile) {
    const g = state.byId.get(tile.dataset.grid);
    if (!g) return;
    const light = lightOf(g.light);
    const list = el("ul", "tip-reasons");
    const details = detailsOf(g);
    for (const d of details.slice(0, 8)) {
      const l = lightOf(d.light);
      list.append(el("li", `light-${l}`, `${SYM[l]} ${reasonText(d)}`));
    }
    if (!details.length) list.append(el("li", "light-green", `${SYM.green} ${t("noReasons")}`));
    tip.replaceChildren(
      el("strong", "tip-name", g.name),
      el("span", "tip-where", `${g.street} · ${g.community} · ${g.grid}`),
      el("span", `tip-light light-${light}`, `${SYM[light]} ${word(light)}`),
      list,
    );
    tip.hidden = false;
    const r = tile.getBoundingClientRect();
    const w = tip.offsetWidth;
    const h = tip.offsetHeight;
    const left = Math.max(8, Math.min(r.left, window.innerWidth - w - 8));
    const top = r.bottom + 6 + h < window.innerHeight ? r.bottom + 6 : Math.max(8, r.top - h - 6);
    tip.style.left = `${left}px`;
    tip.style.top = `${top}px`;
  }
  const hideTip = () => {
    tip.hidden = true;
  };
  const gridsBox = $("grids");
  gridsBox.addEventListener("mouseover", (e) => {
    const tile = e.target.closest(".tile");
    if (tile) showTip(tile);
  });
  gridsBox.addEventListener("mouseout", (e) => {
    const tile = e.target.closest(".tile");
    if (tile && !tile.contains(e.relatedTarget)) hideTip();
  });
  gridsBox.addEventListener("focusin", (e) => {
    const tile = e.target.closest(".tile");
    if (tile) showTip(tile);
  });
  gridsBox.addEventListener("focusout", hideTip);
  gridsBox.addEventListener("scroll", hideTip, { passive: true });
  gridsBox.addEventListener("click", (e) => {
    const tile = e.target.closest(".tile");
    if (tile) openDetail(tile.dataset.grid);
  });

  // -- click: the grid's detail view -------------------------------------------------------
  const dialog = $("detail");
  let openGrid = null;
  let openData = null;

  function openDetail(id) {
    hideTip();
    openGrid = id;
    const g = state.byId.get(id);
    openData = null;
    renderDetail(g ? { ...g, metrics: [], alerts: [], days: null } : { grid: id, name: id, light: "unknown" });
    if (!dialog.open) dialog.showModal();
    loadDetail(id);
  }

  async function loadDetail(id) {
    try {
      const d = await getJSON(`api/v1/grids/${encodeURIComponent(id)}`);
      if (openGrid !== id) return;
      openData = d;
      $("d-error").hidden = true;
      renderDetail(d);
    } catch (exc) {
      if (openGrid !== id) return;
      const box = $("d-error");
      box.textContent = t("detailError", { error: exc.message || String(exc) });
      box.hidden = false;
    }
  }

  // How a series' value reads: the check says it (`kind`, `value_title` in the grid's detail);
  // a metric whose check says nothing is read by the Prometheus naming conventions.
  const KIND_BY_SUFFIX = [
    ["_ratio", "ratio"],
    ["_timestamp_seconds", "timestamp"],
    ["_age_seconds", "seconds"],
  ];
  const kindOf = (m) => m.kind || (KIND_BY_SUFFIX.find(([suffix]) => String(m.metric).endsWith(suffix)) || [])[1];
  const inLang = (names) => (names && typeof names === "object" ? String(names[lang] ?? "") : "");

  function formatValue(m) {
    const v = m.value;
    if (typeof v !== "number" || !Number.isFinite(v)) return String(v);
    const kind = kindOf(m);
    if (kind === "ratio") return `${(v * 100).toFixed(1)}%`;
    if (kind === "timestamp") return v > 0 ? clock(v * 1000) : "—";
    if (kind === "seconds") return duration(v);
    if (kind === "status") return `${v} · ${inLang(m.value_title)}`;
    if (kind === "flag") return v ? t("yes") : t("no");
    return Number.isInteger(v) ? String(v) : v.toFixed(2);
  }

  // a label's value by its display name (the server names the codes: 独居老人, not elderly_alone)
  function labelText(m) {
    const titles = m.label_titles && typeof m.label_titles === "object" ? m.label_titles : {};
    return Object.entries(m.labels || {})
      .filter(([k]) => k !== "grid")
      .map(([k, v]) => inLang(titles[k]) || String(v))
      .join(" · ");
  }

  function renderDetail(d) {
    const light = lightOf(d.light);
    const pill = $("d-light");
    pill.className = `pill light-${light}`;
    pill.textContent = `${SYM[light]} ${word(light)}`;
    pill.dataset.light = String(d.light);
    $("d-name").textContent = String(d.name ?? d.grid);
    const where = [d.street, d.community, t("gridId", { id: d.grid })];
    if (d.zone) where.push(t("zone", { zone: T[lang].zones[d.zone] || d.zone }));
    $("d-where").textContent = where.filter(Boolean).join(" · ");
    dialog.dataset.grid = String(d.grid);

    const reasons = $("d-reasons");
    const details = detailsOf(d);
    reasons.replaceChildren(
      ...details.map((r) => {
        const l = lightOf(r.light);
        const li = el("li", `light-${l}`, `${SYM[l]} ${reasonText(r)}`);
        li.dataset.code = String(r.code ?? "");
        return li;
      }),
    );
    if (!details.length) reasons.append(el("li", "light-green", `${SYM.green} ${t("noReasons")}`));

    const days = Array.isArray(d.days) ? d.days : [];
    const strip = $("d-days");
    strip.replaceChildren(
      ...days.map((x) => {
        const l = lightOf(x.light);
        const li = el("li", `day light-${l}`);
        li.dataset.day = String(x.day);
        li.dataset.light = String(x.light);
        li.title = `${x.day} ${SYM[l]} ${word(l)}`;
        li.append(el("span", "day-sym", SYM[l]), el("span", "day-num", String(x.day).slice(8, 10)));
        return li;
      }),
    );
    const c = countLights(days);
    $("d-days-sum").textContent = days.length ? t("daysSum", c) : d.days === null ? "" : t("noDays");
    $("d-days-range").textContent = days.length ? `${days[0].day} — ${days[days.length - 1].day}` : "";

    const alerts = firingNewestFirst(Array.isArray(d.alerts) ? d.alerts : []);
    $("d-alerts").replaceChildren(...alerts.map(alertItem));
    if (!alerts.length) $("d-alerts").append(el("li", "none", t("noGridAlerts")));

    const rows = (Array.isArray(d.metrics) ? d.metrics : []).filter(
      // one row per series; a zero in a per-category or per-stage breakdown says nothing
      (m) => !(m.value === 0 && Object.keys(m.labels || {}).some((k) => k !== "grid")),
    );
    $("d-metrics").replaceChildren(
      ...rows.map((m) => {
        const tr = el("tr");
        const th = el("th", "", inLang(m.title) || m.metric);
        th.title = m.metric;
        th.scope = "row";
        tr.dataset.metric = m.metric;
        tr.append(th, el("td", "lbl", labelText(m)), el("td", "val", formatValue(m)));
        return tr;
      }),
    );
  }

  $("d-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (e) => {
    if (e.target === dialog) dialog.close(); // a click on the backdrop
  });
  dialog.addEventListener("close", () => {
    openGrid = null;
    openData = null;
    const p = new URLSearchParams(location.search);
    if (p.has("grid")) {
      p.delete("grid"); // closed: a reload shows the whole board again
      const qs = p.toString();
      history.replaceState(null, "", qs ? `?${qs}` : location.pathname);
    }
  });
  $("alert-list").addEventListener("click", (e) => {
    const head = e.target.closest(".agroup-head");
    if (head) {
      const path = head.parentElement.dataset.group;
      if (!opened.delete(path)) opened.add(path);
      renderAlerts();
      return;
    }
    const li = e.target.closest("li.clickable");
    if (li) openDetail(li.dataset.alertGrid);
  });
  $("alert-list").addEventListener("keydown", (e) => {
    const li = e.target.closest("li.clickable");
    if (li && (e.key === "Enter" || e.key === " ")) {
      e.preventDefault();
      openDetail(li.dataset.alertGrid);
    }
  });

  // -- 排名: streets and grids by score, today, this week, this month -----------------------
  // The API's figures as they are: /api/v1/summary ranks the streets (their grids' mean score),
  // /api/v1/assessment the grids; the default assessment (this month) says what today is.
  const RANK_MS = Math.max(REFRESH_MS, 60000); // scores move slowly, and each answer is computed afresh
  let rankAsk = 0;
  let rankTimer = null;
  let rankData = null;

  function isoWeek(day) {
    const d = new Date(`${day}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() + 3 - ((d.getUTCDay() + 6) % 7)); // the Thursday of its week
    const year = d.getUTCFullYear();
    const week = 1 + Math.floor((d - Date.UTC(year, 0, 1)) / 86400000 / 7);
    return `${year}-W${String(week).padStart(2, "0")}`;
  }
  const periodName = (today) => (period === "day" ? today : period === "week" ? isoWeek(today) : today.slice(0, 7));

  async function loadRanking() {
    clearTimeout(rankTimer);
    const ask = ++rankAsk;
    try {
      const month = await getJSON("api/v1/assessment");
      const name = periodName(String(month.today));
      const q = encodeURIComponent(name);
      const [streets, grids] = await Promise.all([
        getJSON(`api/v1/summary?by=street&period=${q}`),
        name === month.period ? month : getJSON(`api/v1/assessment?period=${q}`),
      ]);
      if (ask !== rankAsk) return;
      rankData = [streets, grids];
      renderRanking(streets, grids);
      $("rank-error").hidden = true;
    } catch (exc) {
      if (ask !== rankAsk) return;
      $("rank-error").textContent = t("rankError", { error: exc.message || String(exc) });
      $("rank-error").hidden = false;
    } finally {
      if (ask === rankAsk && view === "rank") rankTimer = setTimeout(loadRanking, RANK_MS);
    }
  }

  const place = (r) => (Number.isInteger(r) ? String(r) : "—");
  const points = (s) => (typeof s === "number" && Number.isFinite(s) ? String(s) : "—");
  const byPlace = (a, b) => (Number.isInteger(a) ? a : Infinity) - (Number.isInteger(b) ? b : Infinity);

  function renderRanking(summary, assessment) {
    $("rank-period").textContent = t("rankPeriod", { from: assessment.from, to: assessment.to, today: assessment.today });
    const units = (Array.isArray(summary.units) ? summary.units : []).slice();
    units.sort((a, b) => byPlace(a.rank, b.rank) || String(a.street).localeCompare(String(b.street), "zh"));
    $("rank-streets").tBodies[0].replaceChildren(
      ...units.map((u) => {
        const tr = el("tr");
        tr.dataset.street = String(u.street ?? "");
        tr.append(el("td", "place", place(u.rank)), el("th", "who", u.street || "—"));
        tr.append(el("td", "score", points(u.score)), el("td", "num", u.grids));
        return tr;
      }),
    );
    const rows = (Array.isArray(assessment.grids) ? assessment.grids : []).slice();
    const rk = (r) => (r.rank && typeof r.rank === "object" ? r.rank : {});
    rows.sort((a, b) => byPlace(rk(a).district, rk(b).district) || String(a.grid).localeCompare(String(b.grid)));
    $("rank-grids").tBodies[0].replaceChildren(
      ...rows.map((r) => {
        const tr = el("tr", state.byId.has(String(r.grid)) ? "clickable" : "");
        const days = r.days && typeof r.days === "object" ? r.days : {};
        tr.dataset.grid = String(r.grid);
        tr.append(el("td", "place", place(rk(r).district)), el("th", "who", r.name ?? r.grid));
        tr.append(el("td", "where", r.street ?? ""), el("td", "score", points(r.score)));
        tr.append(el("td", "place-street", place(rk(r).street)), el("td", "num", days.yellow ?? 0));
        tr.append(el("td", "num", days.red ?? 0));
        return tr;
      }),
    );
    $("ranking").dataset.period = String(assessment.period);
  }
  $("rank-grids").addEventListener("click", (e) => {
    const tr = e.target.closest("tr.clickable");
    if (tr) openDetail(tr.dataset.grid);
  });

  function showView(v) {
    view = v;
    $("wall").hidden = v !== "wall";
    document.querySelector(".filters").hidden = v !== "wall";
    $("ranking").hidden = v !== "rank";
    for (const b of document.querySelectorAll(".view")) b.setAttribute("aria-pressed", String(b.dataset.view === v));
    for (const b of document.querySelectorAll(".period")) b.setAttribute("aria-pressed", String(b.dataset.period === period));
    if (v === "rank") loadRanking();
    else {
      clearTimeout(rankTimer);
      rankAsk += 1; // an answer still on its way is not shown
    }
  }
  for (const b of document.querySelectorAll(".view")) {
    b.addEventListener("click", () => {
      if (b.dataset.view === view) return;
      showView(b.dataset.view);
      syncUrl(true);
    });
  }
  for (const b of document.querySelectorAll(".period")) {
    b.addEventListener("click", () => {
      period = b.dataset.period;
      showView("rank");
      syncUrl(true);
    });
  }

  // -- filters and language ----------------------------------------------------------------
  // The address says what the screen shows (?street=…&community=…, ?view=rank&period=week), so a
  // street office's screen opens on its street; a step down or to another view is a history step.
  function syncUrl(step = false) {
    const p = new URLSearchParams(location.search);
    const set = (k, v) => (v ? p.set(k, v) : p.delete(k));
    set("street", filters.street);
    set("community", filters.community.split("\n").pop());
    set("light", filters.light);
    set("q", filters.q);
    set("view", view === "rank" ? "rank" : "");
    set("period", view === "rank" && period !== "month" ? period : "");
    const qs = p.toString();
    const url = qs ? `?${qs}` : location.pathname;
    if (step && `?${qs}` !== location.search) history.pushState(null, "", url);
    else history.replaceState(null, "", url);
  }
  window.addEventListener("popstate", () => {
    const p = new URLSearchParams(location.search);
    filters.street = p.get("street") || "";
    filters.community = p.get("community") || "";
    filters.light = p.get("light") || "";
    filters.q = p.get("q") || "";
    period = PERIODS.includes(p.get("period")) ? p.get("period") : "month";
    buildFilterOptions();
    applyFilters();
    showView(p.get("view") === "rank" ? "rank" : "wall");
  });
  $("f-street").addEventListener("change", (e) => {
    filters.street = e.target.value;
    buildFilterOptions();
    applyFilters();
    syncUrl();
  });
  $("f-community").addEventListener("change", (e) => {
    filters.community = e.target.value;
    applyFilters();
    syncUrl();
  });
  $("f-light").addEventListener("change", (e) => {
    filters.light = e.target.value;
    applyFilters();
    syncUrl();
  });
  $("f-search").addEventListener("input", (e) => {
    filters.q = e.target.value;
    applyFilters();
    syncUrl();
  });

  function applyLanguage() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.title = `${t("title")} · gridwatch`;
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
      node.placeholder = t(node.dataset.i18nPlaceholder);
    }
    const btn = $("lang");
    btn.textContent = t("langButton");
    btn.lang = lang === "zh" ? "en" : "zh-CN";
    if (state.grids.length || state.error) {
      buildFilterOptions();
      render();
    }
    if (rankData) renderRanking(...rankData);
    if (openGrid !== null) {
      const g = state.byId.get(openGrid);
      if (openData) renderDetail(openData);
      else if (g) renderDetail({ ...g, metrics: [], alerts: [], days: null });
    }
  }
  $("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    try {
      localStorage.setItem("gridwatch.web.board.lang", lang);
    } catch {
      // not kept: fine
    }
    applyLanguage();
  });

  applyLanguage();
  showView(view);
  refresh();
})();
