// ECharts, imported module by module so the bundle holds only the charts the UI draws.
import * as echarts from "echarts/core";
import { BarChart, HeatmapChart, LineChart, SankeyChart } from "echarts/charts";
import {
  GridComponent,
  LegendComponent,
  TooltipComponent,
  VisualMapComponent,
} from "echarts/components";
import { SVGRenderer } from "echarts/renderers";

echarts.use([
  BarChart,
  HeatmapChart,
  LineChart,
  SankeyChart,
  GridComponent,
  LegendComponent,
  TooltipComponent,
  VisualMapComponent,
  SVGRenderer,
]);

export type Chart = echarts.ECharts;
export type Option = echarts.EChartsCoreOption;

/** Colours of the current theme, read from the CSS variables. */
export function themeColors(): { text: string; muted: string; grid: string; accent: string; bg: string } {
  const css = getComputedStyle(document.documentElement);
  const v = (name: string) => css.getPropertyValue(name).trim();
  return { text: v("--text"), muted: v("--muted"), grid: v("--border"), accent: v("--accent"), bg: v("--surface") };
}

/** A chart in `el`, resized with it; disposed by the returned function. */
export function makeChart(el: HTMLElement, option: Option): { chart: Chart; dispose: () => void } {
  const chart = echarts.init(el, null, { renderer: "svg" });
  const c = themeColors();
  chart.setOption({
    textStyle: { color: c.text, fontFamily: "inherit" },
    animation: false,
    ...option,
  });
  const observer = new ResizeObserver(() => chart.resize());
  observer.observe(el);
  return {
    chart,
    dispose: () => {
      observer.disconnect();
      chart.dispose();
    },
  };
}

export function axisStyle(): Record<string, unknown> {
  const c = themeColors();
  return {
    axisLine: { lineStyle: { color: c.grid } },
    axisLabel: { color: c.muted },
    splitLine: { lineStyle: { color: c.grid } },
  };
}
