/*
 * A wait step's rule and its probes in words (pure: no DOM, tested in Node). The page
 * says "waits for the probe to print 0 · probe 3 printed “3”, not yet" where it said
 * "waits for ^0$ · probe 3 did not match" above a bare "3"; the pattern itself stays in
 * the step's command and the downloaded log.
 */

const META = /[\\^$.*+?()[\]{}|]/;
const SHOWN = 80; // characters of a probe's last line in the sentence

function clip(line) {
  return line.length > SHOWN ? line.slice(0, SHOWN - 1) + "…" : line;
}

/** What the wait waits for: "the probe to print 0" (`^0$`), "the probe to print a line
 * containing ready" (`ready`), else "a line of the probe's output to match <pattern>". */
export function untilWords(until) {
  const text = String(until || "");
  const exact = /^\^(.*)\$$/.exec(text);
  if (exact && !META.test(exact[1])) {
    return exact[1] ? "the probe to print " + exact[1] : "the probe to print an empty line";
  }
  if (text && !META.test(text)) return "the probe to print a line containing " + text;
  return "a line of the probe's output to match " + text;
}

/** The last probe in words: "probe 3 printed “3”, not yet", "probe 4 printed “0”: a
 * match", "probe 2 printed nothing and exited with code 1, not yet". */
export function probeWords(wait) {
  if (!wait.attempt) return "first probe running";
  const output = wait.output || [];
  let text = "probe " + wait.attempt + (output.length
    ? " printed \u201c" + clip(output[output.length - 1]) + "\u201d" : " printed nothing");
  if (wait.exitCode !== null && wait.exitCode !== undefined && wait.exitCode !== 0) {
    text += " and exited with code " + wait.exitCode;
  }
  return text + (wait.matched ? ": a match" : ", not yet");
}

/** The caption above the probe's output in the panel: "What probe 3 printed:". */
export function outputCaption(wait) {
  return "What probe " + wait.attempt + " printed:";
}
