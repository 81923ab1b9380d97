// Charts with uPlot (vendored, pinned: vendor/uplot-1.6.32, loaded as the global `uPlot`).
// `series` is [{label, values}] over shared `x` values; null values are gaps. The container's
// `data-points` says how many x values are drawn (what the browser tests read).
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"];

function draw(container, { x, series, xTime = false, height = 240, yLabel = "" }, bars) {
  container.replaceChildren();
  const width = Math.max(320, container.clientWidth || 640);
  const Plot = window.uPlot;
  const paths = bars ? Plot.paths.bars({ size: [0.6, 60] }) : undefined;
  const opts = {
    width, height,
    scales: { x: { time: xTime } },
    axes: [{}, { label: yLabel }],
    series: [{}, ...series.map((s, i) => ({
      label: s.label, stroke: COLORS[i % COLORS.length], width: bars ? 1 : 2, spanGaps: true,
      fill: bars ? `${COLORS[i % COLORS.length]}aa` : undefined, paths, points: { show: !bars && x.length < 60 },
    }))],
  };
  const plot = new Plot(opts, [x, ...series.map((s) => s.values)], container);
  container.dataset.points = String(x.length);
  return plot;
}

export function lineChart(container, opts) {
  return draw(container, opts, false);
}

export function barChart(container, opts) {
  return draw(container, opts, true);
}
