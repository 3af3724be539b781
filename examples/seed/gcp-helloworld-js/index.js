exports.helloWorld = (req, res) => {
  res.send('Hello, World');
};
