<?php
$CONFIG = array('overwrite.cli.url' => 'https://x.example', 'dbtype' => 'mysql', 'dbhost' => 'db', 'dbuser' => 'u',
  'dbtableprefix' => 'oc_; DROP TABLE x', 'redis' => ['host' => 'r']);
