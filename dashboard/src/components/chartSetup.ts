// Chart.js, registered once with only the parts the dashboard draws (tree-shaken).
import {
  BarController,
  BarElement,
  Chart,
  Filler,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  ScatterController,
  Tooltip,
  Legend,
} from 'chart.js'

Chart.register(LineController, BarController, ScatterController, LineElement, BarElement, PointElement, LinearScale, Filler, Tooltip, Legend)

Chart.defaults.font.family = "'Inter', 'Pretendard', 'Noto Sans KR', 'Noto Sans CJK KR', system-ui, sans-serif"
Chart.defaults.font.size = 12
Chart.defaults.color = '#6b777a'
Chart.defaults.borderColor = '#ece9e2'

export { Chart }

/** A calm palette for device series, in order. */
export const SERIES_COLORS = ['#0f766e', '#c2791b', '#4f6fb5', '#b4443a', '#7a5aa6', '#3f8f4f', '#a0617a', '#52606d']

export function colorFor(index: number): string {
  return SERIES_COLORS[index % SERIES_COLORS.length] ?? '#0f766e'
}
