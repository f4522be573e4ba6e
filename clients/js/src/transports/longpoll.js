import { PollTransport } from './poll.js';

/** `longpoll`: the server holds each poll until it has something; the next goes at once. */
export class LongpollTransport extends PollTransport {
  constructor(url, callbacks, options) {
    super('longpoll', url, callbacks, options);
  }
}
