import { PollTransport } from './poll.js';

/** `polling`: each poll is answered at once; the next goes after `options.pollInterval`. */
export class PollingTransport extends PollTransport {
  constructor(url, callbacks, options) {
    super('polling', url, callbacks, options);
  }
}
