// A live timeline: the NDJSON stream read with fetch + ReadableStream, reconnected and resumed.
//
// How resuming works here: the stream's own resume point (ErrorInfo `since_tweet_id`) travels in
// the response's trailers, which a browser's fetch never exposes. So on every reconnect the
// stream asks for what came after the newest tweet it has shown (`since_tweet_id`; the server
// replays from a second before it, and tweets are deduplicated by id), and `onReconnect` lets the
// page re-read the first page of the timeline, which covers the one case where the server's
// resume point would have been older (Redis lost events before they reached this stream).

import { errorOf, headers } from "./api.js";

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30000;

/**
 * Opens `path` (e.g. /v1/timelines/home:stream) and keeps it open until `stop()`.
 * handlers: onEvent(event) for each {tweet}/{deletion}/{heartbeat}; onState(state, detail) with
 * "connecting" | "live" | "waiting" (detail: seconds and why) | "stopped" (detail: why);
 * onReconnect() before each reconnection; newest() the newest tweet id shown, for since_tweet_id.
 */
export function liveStream(path, { onEvent, onState, onReconnect, newest }) {
  const control = { stopped: false, abort: null };
  let delay = FIRST_DELAY_MS;

  async function once() {
    const since = newest();
    const url = since ? `${path}?since_tweet_id=${encodeURIComponent(since)}` : path;
    const aborter = new AbortController();
    control.abort = aborter;
    onState("connecting");
    const response = await fetch(url, { headers: headers(), signal: aborter.signal });
    if (!response.ok) throw await errorOf(response);
    onState("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      let end;
      while ((end = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, end).trim();
        buffered = buffered.slice(end + 1);
        if (line) {
          onEvent(JSON.parse(line));
          delay = FIRST_DELAY_MS; // a working stream resets the backoff
        }
      }
    }
  }

  async function run() {
    while (!control.stopped) {
      let waitMs = delay;
      let why = "the live connection ended";
      try {
        await once();
      } catch (error) {
        if (control.stopped) break;
        if (error.status === 401) {
          onState("stopped", error.words);
          return;
        }
        if (error.retryAfter) waitMs = error.retryAfter * 1000;
        why = error.words || "the live connection failed";
      }
      if (control.stopped) break;
      onState("waiting", { seconds: Math.round(waitMs / 1000), why });
      await new Promise((resolve) => setTimeout(resolve, waitMs));
      delay = Math.min(delay * 2, MAX_DELAY_MS);
      if (!control.stopped) await onReconnect();
    }
    onState("stopped", "");
  }

  run();
  return {
    stop() {
      control.stopped = true;
      control.abort?.abort();
    },
  };
}
