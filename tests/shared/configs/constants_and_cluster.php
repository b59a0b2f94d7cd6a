<?php
$CONFIG = array (
  'overwrite.cli.url' => 'https://cloud.example.com',
  'dbtype' => 'mysql',
  'dbhost' => '192.0.2.10',
  'dbname' => 'nextcloud',
  'dbuser' => 'nextcloud',
  'dbpassword' => 'secret',
  'memcached_options' => array(
    \Memcached::OPT_CONNECT_TIMEOUT => 50,
    \Memcached::OPT_COMPRESSION => true,
    \Memcached::OPT_SERIALIZER => \Memcached::SERIALIZER_IGBINARY,
  ),
  'redis' => array('host' => 'ignored-because-cluster'),
  'redis.cluster' => array (
    'seeds' => array (
      'node1.example.com:7000',
      'node2.example.com:7001',
      '[2001:db8::5]:7002',
    ),
    'timeout' => 0.0,
    'read_timeout' => 0.0,
    'failover_mode' => \RedisCluster::FAILOVER_ERROR,
    'password' => 'cluster-secret',
    'user' => 'cluster-user',
  ),
);
?>
This text after the close tag is output, not configuration.
