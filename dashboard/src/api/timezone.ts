// The organisation's calendar (POWERFLOW_ORGANISATION_TIMEZONE), learned once from the summary.
import { getSummary } from './endpoints'

let pending: Promise<string> | null = null

export function organisationTimezone(): Promise<string> {
  pending ??= getSummary(null)
    .then((summary) => summary.timezone)
    .catch(() => {
      pending = null
      return 'Asia/Seoul'
    })
  return pending
}
