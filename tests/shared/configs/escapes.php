<?php
$CONFIG = array(
  'overwrite.cli.url' => 'https://cloud.example.com',
  'dbtype' => 'mysql',
  'dbhost' => "db\x2eexample\u{2E}com",
  'dbname' => 'next\'cloud',
  'dbuser' => "nc\\admin",
  'dbpassword' => 'it\'s a \\ secret',
  'redis' => array('host' => 'redis', 'port' => 0x18EB,),
);
