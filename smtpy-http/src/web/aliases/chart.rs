//! The alias page's usage chart: a server-rendered SVG bar chart (bars
//! stacked per day: messages, then blocked), sized in Rust so the page
//! needs no script and no inline style.

/// Width of the drawing, in SVG units.
pub(crate) const WIDTH: u32 = 600;
/// Height of the drawing, in SVG units.
pub(crate) const HEIGHT: u32 = 160;
/// Height of the plot area (bars), in SVG units.
const PLOT: u32 = 130;
/// Top margin above the tallest bar.
const TOP: u32 = 6;

/// One day's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DayCount {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Messages that went through the alias (forwards and replies).
    pub messages: u64,
    /// Messages blocked.
    pub blocked: u64,
}

/// A rectangle of the chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bar {
    /// `bar-forwarded` or `bar-blocked`.
    pub class: &'static str,
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// The tooltip (`<title>`).
    pub title: String,
}

/// A label under the axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tick {
    /// Horizontal position (the label's start).
    pub x: u32,
    /// The text.
    pub text: String,
}

/// The chart, ready for the template.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chart {
    /// The bars (days without traffic have none).
    pub bars: Vec<Bar>,
    /// Labels under the axis (first, middle and last day).
    pub ticks: Vec<Tick>,
    /// The days, for the table fallback.
    pub days: Vec<DayCount>,
    /// Sum of messages.
    pub total_messages: u64,
    /// Sum of blocked.
    pub total_blocked: u64,
    /// The y of the axis line.
    pub axis_y: u32,
    /// The drawing's width.
    pub width: u32,
    /// The drawing's height.
    pub height: u32,
    /// The busiest day's total (the top of the scale).
    pub max: u64,
}

impl Chart {
    /// The chart of `days` (oldest first).
    pub(crate) fn of(days: Vec<DayCount>) -> Chart {
        let n = u32::try_from(days.len().max(1)).unwrap_or(1);
        let slot = WIDTH / n;
        let bar_width = (slot * 7 / 10).max(1);
        let max = days
            .iter()
            .map(|d| d.messages.saturating_add(d.blocked))
            .max()
            .unwrap_or(0);
        let scale = |v: u64| -> u32 {
            if max == 0 {
                return 0;
            }
            let h = v.saturating_mul(u64::from(PLOT - TOP)) / max;
            // A day with traffic shows at least one unit.
            u32::try_from(h).unwrap_or(PLOT - TOP).max(u32::from(v > 0))
        };
        let mut bars = Vec::new();
        for (i, d) in days.iter().enumerate() {
            let x = u32::try_from(i).unwrap_or(0) * slot + (slot - bar_width) / 2;
            let h_msg = scale(d.messages);
            let h_blk = scale(d.blocked);
            if h_msg > 0 {
                bars.push(Bar {
                    class: "bar-forwarded",
                    x,
                    y: PLOT - h_msg,
                    width: bar_width,
                    height: h_msg,
                    title: format!("{}: {} forwarded or replied", d.day, d.messages),
                });
            }
            if h_blk > 0 {
                bars.push(Bar {
                    class: "bar-blocked",
                    x,
                    y: PLOT.saturating_sub(h_msg + h_blk),
                    width: bar_width,
                    height: h_blk,
                    title: format!("{}: {} blocked", d.day, d.blocked),
                });
            }
        }
        let mut ticks = Vec::new();
        if let (Some(first), Some(last)) = (days.first(), days.last()) {
            ticks.push(Tick {
                x: 0,
                text: first.day.clone(),
            });
            if days.len() > 2 {
                let mid = days.len() / 2;
                ticks.push(Tick {
                    x: u32::try_from(mid).unwrap_or(0) * slot,
                    text: days[mid].day.clone(),
                });
            }
            if days.len() > 1 {
                ticks.push(Tick {
                    x: WIDTH.saturating_sub(60),
                    text: last.day.clone(),
                });
            }
        }
        Chart {
            total_messages: days.iter().map(|d| d.messages).sum(),
            total_blocked: days.iter().map(|d| d.blocked).sum(),
            bars,
            ticks,
            days,
            axis_y: PLOT,
            width: WIDTH,
            height: HEIGHT,
            max,
        }
    }

    /// The chart's summary for screen readers.
    pub(crate) fn summary(&self) -> String {
        let period = match (self.days.first(), self.days.last()) {
            (Some(f), Some(l)) => format!("from {} to {}", f.day, l.day),
            _ => String::new(),
        };
        format!(
            "Mail per day {period}: {} forwarded or replied, {} blocked; busiest day {} messages.",
            self.total_messages, self.total_blocked, self.max
        )
    }

    /// The y of a tick's text.
    pub(crate) fn tick_y(&self) -> u32 {
        self.axis_y + 18
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(i: u32, messages: u64, blocked: u64) -> DayCount {
        DayCount {
            day: format!("2026-01-{:02}", i + 1),
            messages,
            blocked,
        }
    }

    #[test]
    fn bars_scale_to_the_busiest_day_and_stack() {
        let days = (0..30)
            .map(|i| match i {
                3 => day(i, 10, 0),
                4 => day(i, 4, 1),
                _ => day(i, 0, 0),
            })
            .collect();
        let c = Chart::of(days);
        assert_eq!(c.total_messages, 14);
        assert_eq!(c.total_blocked, 1);
        assert_eq!(c.max, 10);
        assert_eq!(c.bars.len(), 3);
        let tallest = &c.bars[0];
        assert_eq!(tallest.height, PLOT - TOP);
        assert_eq!(tallest.y, TOP);
        // The blocked bar sits on top of the same day's messages.
        let (msg, blk) = (&c.bars[1], &c.bars[2]);
        assert_eq!(blk.class, "bar-blocked");
        assert_eq!(blk.x, msg.x);
        assert_eq!(blk.y + blk.height, msg.y);
        assert!(c.summary().contains("14 forwarded or replied, 1 blocked"));
        assert_eq!(c.ticks.len(), 3);
    }

    #[test]
    fn an_empty_period_draws_no_bars() {
        let c = Chart::of((0..30).map(|i| day(i, 0, 0)).collect());
        assert!(c.bars.is_empty());
        assert_eq!(c.max, 0);
        let none = Chart::of(Vec::new());
        assert!(none.bars.is_empty() && none.ticks.is_empty());
    }
}
