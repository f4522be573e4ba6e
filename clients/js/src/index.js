/** The ES module entry: `import Pushwire from 'pushwire'` or `import { Pushwire } from …`. */
import { Pushwire } from './pushwire.js';

export { Pushwire };
export default Pushwire;
