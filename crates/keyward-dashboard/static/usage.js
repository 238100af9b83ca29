// Usage charts: stacked bars per day, one colour per model or key, drawn by
// the vendored Chart.js from the JSON the server put in the page.
"use strict";

(function () {
  var source = document.getElementById("usage-data");
  if (!source || typeof Chart === "undefined") return;
  var data = JSON.parse(source.textContent);
  var palette = ["#10a37f", "#3b82f6", "#f59e0b", "#8b5cf6", "#ef4444", "#06b6d4", "#84cc16", "#ec4899", "#64748b", "#14b8a6"];
  var font = '-apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
  Chart.defaults.font.family = font;
  Chart.defaults.color = "#6e6e80";

  function draw(id, sets, format) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    var datasets = sets.map(function (s, i) {
      return {
        label: s.label || "(unnamed)",
        data: s.data,
        backgroundColor: palette[i % palette.length],
        borderRadius: 3,
        maxBarThickness: 28
      };
    });
    new Chart(canvas, {
      type: "bar",
      data: { labels: data.labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { display: datasets.length > 0, position: "bottom", labels: { boxWidth: 10, boxHeight: 10, usePointStyle: true } },
          tooltip: { callbacks: { label: function (c) { return " " + c.dataset.label + ": " + format(c.parsed.y); } } }
        },
        scales: {
          x: { stacked: true, grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 8 } },
          y: { stacked: true, beginAtZero: true, grid: { color: "#f0f0f0" }, border: { display: false }, ticks: { callback: function (v) { return format(v); }, maxTicksLimit: 5 } }
        }
      }
    });
  }

  var count = new Intl.NumberFormat("en-US", { notation: "compact" });
  draw("chart-cost", data.cost, function (v) { return v === 0 ? "$0" : "$" + (v >= 1 ? v.toFixed(2) : v.toPrecision(2)); });
  draw("chart-requests", data.requests, function (v) { return count.format(v); });
  draw("chart-tokens", data.tokens, function (v) { return count.format(v); });
})();
