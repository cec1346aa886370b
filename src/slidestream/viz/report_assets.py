"""The report page's stylesheet and its one script (sorting tables), inlined into ``index.html``."""

CSS = """
:root{--ok:#1b7f3b;--ok-bg:#e6f4ea;--skip:#8a6d00;--skip-bg:#fdf6d8;--fail:#b3261e;--fail-bg:#fce8e6;
--warn:#8a4b00;--warn-bg:#fff4e0;--line:#d9dce1;--muted:#5f6670;--bg:#f6f7f9}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1f2328;background:var(--bg)}
header.page{background:#fff;border-bottom:1px solid var(--line);padding:16px 28px 0;position:sticky;top:0;z-index:2}
h1{margin:0 0 2px;font-size:22px}
h2{font-size:18px;margin:0 0 12px}
h3{font-size:15px;margin:0}
h4{font-size:13px;margin:14px 0 6px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
nav{display:flex;gap:18px;margin-top:10px}
nav a{padding:6px 0 10px;text-decoration:none;color:#0b57d0;border-bottom:2px solid transparent}
nav a:hover{border-bottom-color:#0b57d0}
main{padding:18px 28px 60px;max-width:1500px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:18px 20px;margin-bottom:18px;scroll-margin-top:110px}
a{color:#0b57d0}
code{font:12px/1.4 ui-monospace,"DejaVu Sans Mono",monospace;background:#f1f3f5;padding:1px 4px;border-radius:3px}
code.path{word-break:break-all}
pre.run-config{font:12px/1.45 ui-monospace,"DejaVu Sans Mono",monospace;background:#f1f3f5;padding:8px 12px;border-radius:4px;max-height:28em;overflow:auto}
.muted{color:var(--muted)}.small{font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:14px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:120px;background:#fff}
.card .label{font-size:12px;color:var(--muted)}.card .value{font-size:22px;font-weight:600}
.card .hint{font-size:11px;color:var(--muted);max-width:220px}
.card.ok .value{color:var(--ok)}.card.skipped .value{color:var(--skip)}.card.failed{border-color:var(--fail);background:var(--fail-bg)}
.card.failed .value{color:var(--fail)}.badge.damaged{color:#fff;background:var(--fail);border-color:var(--fail)}
.alert{border-radius:6px;padding:10px 14px;margin:10px 0;border:1px solid}
.alert ul{margin:6px 0 0;padding-left:20px}.alert li{margin:2px 0}
.alert.failed{background:var(--fail-bg);border-color:#f1b8b3}.alert.warn{background:var(--warn-bg);border-color:#f3d19e}
.warn-inline{color:var(--warn);font-weight:600}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;border:1px solid}
.badge.ok{color:var(--ok);background:var(--ok-bg);border-color:#a8d5b5}
.badge.skipped{color:var(--skip);background:var(--skip-bg);border-color:#e9d68a}
.badge.failed{color:var(--fail);background:var(--fail-bg);border-color:#f1b8b3}
.badge.no-record{color:var(--muted);background:#eef0f3;border-color:var(--line)}
.tag{font-size:11px;color:var(--warn);background:var(--warn-bg);border-radius:3px;padding:0 4px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th.num,td.num{text-align:right;white-space:nowrap}
thead th{background:#f1f3f5;font-size:12px;position:relative;white-space:nowrap}
thead th button{all:unset;cursor:pointer;display:block;width:100%}
thead th button::after{content:" ↕";color:#9aa0a6}
thead th[aria-sort=ascending] button::after{content:" ▲";color:#1f2328}
thead th[aria-sort=descending] button::after{content:" ▼";color:#1f2328}
table.summary tbody tr.failed{background:#fff7f6}
table.summary td .reason{display:inline-block;max-width:460px}
table.summary tbody tr:hover{background:#f5f8ff}
table.kv th{width:1%;white-space:nowrap;color:var(--muted);font-weight:500;background:none}
table.stages{font-size:13px}
.config-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:14px}
.config{border:1px solid var(--line);border-radius:6px;padding:10px 12px}
.config table{font-size:13px}
ul.batches{margin:0;padding-left:20px;font-size:13px}
article.slide{border:1px solid var(--line);border-left:5px solid var(--ok);border-radius:6px;padding:14px 16px;margin:0 0 16px;scroll-margin-top:110px}
article.slide.failed{border-left-color:var(--fail)}article.slide.skipped{border-left-color:#d4b106}
article.slide.no-record{border-left-color:#9aa0a6}
article.slide:target{box-shadow:0 0 0 3px #a8c7fa}
article.slide>header{display:flex;align-items:center;gap:10px;margin-bottom:8px}
article.slide>header .top{margin-left:auto;font-size:12px}
.slide-body{display:grid;grid-template-columns:minmax(260px,520px) minmax(320px,1fr);gap:20px;align-items:start}
@media (max-width:900px){.slide-body{grid-template-columns:1fr}}
figure{margin:0}
figure img{display:block;max-width:100%;max-height:560px;height:auto;border:1px solid var(--line);border-radius:4px;background:#fff}
figcaption{font-size:12px;color:var(--muted);margin-top:4px}
figcaption.title{font-size:13px;font-weight:600;color:#1f2328;margin:0 0 4px}
.legend{display:flex;flex-wrap:wrap;gap:4px 12px;font-size:12px;margin-top:6px}
.key{display:inline-flex;align-items:center;gap:5px}
.swatch{display:inline-block;width:14px;height:10px;border-radius:2px;border:1px solid rgba(0,0,0,.25)}
.colorbar{display:flex;align-items:center;gap:6px;font-size:12px;margin-top:6px}
.colorbar .bar{display:inline-block;width:180px;height:10px;border-radius:2px;border:1px solid rgba(0,0,0,.2)}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:16px}
.noimage{border:1px dashed var(--line);border-radius:4px;padding:60px 10px;text-align:center;color:var(--muted)}
"""

JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  heads.forEach(function (th, col) {
    var button = th.querySelector('button');
    if (!button) { return; }
    button.addEventListener('click', function () {
      var ascending = th.getAttribute('aria-sort') !== 'ascending';
      heads.forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
      var numeric = th.classList.contains('num');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var key = function (row) {
        var cell = row.cells[col];
        var text = cell.hasAttribute('data-sort') ? cell.getAttribute('data-sort') : cell.textContent.trim();
        if (numeric || /^-?[0-9.]+$/.test(text)) {
          var value = parseFloat(text);
          return isNaN(value) ? null : value;
        }
        return text.toLowerCase();
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === y) { return 0; }
        if (x === null || x === '') { return 1; }   // empty cells last, whatever the direction
        if (y === null || y === '') { return -1; }
        var order = x < y ? -1 : 1;
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""
