// The runtime's floor: a Worker that answers 200 without reading the request.
export default {
  async fetch() {
    return new Response("ok");
  },
};
